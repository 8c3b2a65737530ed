"""An emulated USB receipt printer, as a pyusb backend.

Hand it to python-escpos's real ``escpos.printer.Usb`` with
``usb_args={"backend": printer}``: ``usb.core.find`` enumerates it, pyusb reads
its descriptors, ``Usb.open()`` sets the configuration and resets it, and every
``_raw()`` arrives here as a bulk OUT transfer on endpoint 0x01. Status replies
go out on bulk IN endpoint 0x82.

The device: one configuration (value 1), one printer-class interface (class 7,
subclass 1, protocol 2 = bidirectional) with one alternate setting, two bulk
endpoints. Traps from FIELD-NOTES are honoured: pyusb probes alternate settings
until ``get_interface_descriptor`` raises ``IndexError``; ``open()`` resets the
device, so ``get_configuration`` keeps answering 1; a printer with nothing to
say makes ``bulk_read`` raise ``usb.core.USBTimeoutError``.

Real-time status: a bulk OUT transfer that is exactly ``DLE EOT n`` (how
python-escpos sends ``query_status``) is answered, not printed, with the status
byte for ``n`` = 1 (printer), 2 (offline cause), 3 (error cause), 4 (paper
roll sensor), built from the switches below. Every other byte is print data and
is appended to :attr:`EmulatedUsbPrinter.received`; while the printer is
offline (cover open, paper out) print data is still captured, in
:attr:`received_while_offline` too, so tests can prove nothing was sent then.

Switches: :attr:`paper_end`, :attr:`paper_near_end`, :attr:`cover_open`,
:attr:`silent` (answers nothing: every read times out) and :meth:`unplug` /
:meth:`plug`. Unplugged, the bus enumerates nothing and every operation on a
handle opened before raises ``USBError`` with errno ENODEV, like a yanked cable
under libusb; after :meth:`plug` old handles stay dead and a fresh open works.
"""

from __future__ import annotations

import array
import errno
import threading
from dataclasses import dataclass, field
from typing import Any

import usb.backend
import usb.core

VENDOR_ID = 0x04B8  # Epson
PRODUCT_ID = 0x0E15  # TM-T20II
OUT_EP = 0x01
IN_EP = 0x82
_BULK = 0x02
_LIBUSB_ERROR_NO_DEVICE = -4
_LIBUSB_ERROR_TIMEOUT = -7
_LIBUSB_ERROR_NOT_FOUND = -5


@dataclass(frozen=True)
class _DeviceId:
    generation: int  # bumps on every plug: handles of an older generation are dead


@dataclass
class _Handle:
    device: _DeviceId
    open: bool = True


@dataclass
class _DeviceDescriptor:
    idVendor: int
    idProduct: int
    bus: int = 1
    address: int = 5
    bLength: int = 18
    bDescriptorType: int = 1
    bcdUSB: int = 0x0200
    bDeviceClass: int = 0
    bDeviceSubClass: int = 0
    bDeviceProtocol: int = 0
    bMaxPacketSize0: int = 64
    bcdDevice: int = 0x0100
    iManufacturer: int = 0
    iProduct: int = 0
    iSerialNumber: int = 0
    bNumConfigurations: int = 1
    port_number: int = 1
    port_numbers: tuple[int, ...] = (1,)
    speed: int = 2  # full speed


@dataclass
class _ConfigurationDescriptor:
    bLength: int = 9
    bDescriptorType: int = 2
    wTotalLength: int = 32
    bNumInterfaces: int = 1
    bConfigurationValue: int = 1
    iConfiguration: int = 0
    bmAttributes: int = 0xC0
    bMaxPower: int = 50
    extra_descriptors: list[int] = field(default_factory=list)


@dataclass
class _InterfaceDescriptor:
    bLength: int = 9
    bDescriptorType: int = 4
    bInterfaceNumber: int = 0
    bAlternateSetting: int = 0
    bNumEndpoints: int = 2
    bInterfaceClass: int = 7  # printer
    bInterfaceSubClass: int = 1
    bInterfaceProtocol: int = 2  # bidirectional
    iInterface: int = 0
    extra_descriptors: list[int] = field(default_factory=list)


@dataclass
class _EndpointDescriptor:
    bEndpointAddress: int
    bLength: int = 7
    bDescriptorType: int = 5
    bmAttributes: int = _BULK
    wMaxPacketSize: int = 64
    bInterval: int = 0
    bRefresh: int = 0
    bSynchAddress: int = 0
    extra_descriptors: list[int] = field(default_factory=list)


class EmulatedUsbPrinter(usb.backend.IBackend):  # type: ignore[misc]
    """A receipt printer on an emulated USB bus; see the module docstring."""

    def __init__(self, *, vendor_id: int = VENDOR_ID, product_id: int = PRODUCT_ID) -> None:
        self.vendor_id = vendor_id
        self.product_id = product_id
        self.paper_end = False
        self.paper_near_end = False
        self.cover_open = False
        self.silent = False
        self.received = bytearray()
        self.received_while_offline = bytearray()
        self.status_queries: list[int] = []
        self.open_count = 0
        self._plugged = True
        self._generation = 1
        self._replies = bytearray()
        self._lock = threading.Lock()
        self._write_event = threading.Condition(self._lock)

    # --- switches ----------------------------------------------------------------
    @property
    def unplugged(self) -> bool:
        """True while the cable is out."""
        return not self._plugged

    def unplug(self) -> None:
        """Yank the cable: enumeration finds nothing and open handles die."""
        with self._lock:
            self._plugged = False
            self._replies.clear()

    def plug(self) -> None:
        """Put the cable back: the device enumerates again, as a new device."""
        with self._lock:
            if not self._plugged:
                self._plugged = True
                self._generation += 1

    @property
    def online(self) -> bool:
        """A printer with its cover open or out of paper stops printing (goes offline)."""
        return not (self.cover_open or self.paper_end)

    def take_received(self) -> bytes:
        """Return and clear the captured print data."""
        with self._lock:
            data = bytes(self.received)
            self.received.clear()
            self.received_while_offline.clear()
            return data

    def wait_for_bytes(self, count: int, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` print bytes arrived (for threaded tests)."""
        with self._write_event:
            return self._write_event.wait_for(lambda: len(self.received) >= count, timeout)

    # --- status bytes (ESC/POS DLE EOT n) --------------------------------------------
    def status_byte(self, n: int) -> int:
        """The reply to ``DLE EOT n`` for the current switches (fixed bits 0x12 included)."""
        byte = 0x12
        if n == 1:
            if not self.online:
                byte |= 0x08
        elif n == 2:
            if self.cover_open:
                byte |= 0x04
            if self.paper_end:
                byte |= 0x20
        elif n == 4:
            if self.paper_near_end or self.paper_end:
                byte |= 0x0C
            if self.paper_end:
                byte |= 0x60
        return byte

    # --- IBackend ---------------------------------------------------------------
    def _check(self, handle: _Handle | _DeviceId) -> None:
        device = handle.device if isinstance(handle, _Handle) else handle
        if not self._plugged or device.generation != self._generation:
            raise usb.core.USBError(
                "No such device (it may have been disconnected)",
                _LIBUSB_ERROR_NO_DEVICE,
                errno.ENODEV,
            )
        if isinstance(handle, _Handle) and not handle.open:
            raise usb.core.USBError("Device handle closed", _LIBUSB_ERROR_NOT_FOUND, errno.EBADF)

    def enumerate_devices(self) -> list[_DeviceId]:
        with self._lock:
            return [_DeviceId(self._generation)] if self._plugged else []

    def get_parent(self, dev: _DeviceId) -> None:
        return None

    def get_device_descriptor(self, dev: _DeviceId) -> _DeviceDescriptor:
        return _DeviceDescriptor(idVendor=self.vendor_id, idProduct=self.product_id)

    def get_configuration_descriptor(self, dev: _DeviceId, config: int) -> _ConfigurationDescriptor:
        if config != 0:
            raise IndexError(f"configuration index {config} out of range")
        return _ConfigurationDescriptor()

    def get_interface_descriptor(
        self, dev: _DeviceId, intf: int, alt: int, config: int
    ) -> _InterfaceDescriptor:
        if config != 0 or intf != 0 or alt != 0:
            raise IndexError(f"no interface {intf} alternate setting {alt}")
        return _InterfaceDescriptor()

    def get_endpoint_descriptor(
        self, dev: _DeviceId, ep: int, intf: int, alt: int, config: int
    ) -> _EndpointDescriptor:
        if config != 0 or intf != 0 or alt != 0 or ep not in (0, 1):
            raise IndexError(f"no endpoint {ep}")
        return _EndpointDescriptor(bEndpointAddress=OUT_EP if ep == 0 else IN_EP)

    def open_device(self, dev: _DeviceId) -> _Handle:
        with self._lock:
            self._check(dev)
            self.open_count += 1
            return _Handle(dev)

    def close_device(self, dev_handle: _Handle) -> None:
        dev_handle.open = False  # closing never fails, even for a yanked device

    def set_configuration(self, dev_handle: _Handle, config_value: int) -> None:
        with self._lock:
            self._check(dev_handle)
            if config_value != 1:
                raise usb.core.USBError("Invalid configuration", -2, errno.EINVAL)

    def get_configuration(self, dev_handle: _Handle) -> int:
        with self._lock:
            self._check(dev_handle)
            return 1

    def set_interface_altsetting(self, dev_handle: _Handle, intf: int, altsetting: int) -> None:
        with self._lock:
            self._check(dev_handle)
            if intf != 0 or altsetting != 0:
                raise usb.core.USBError("Invalid interface", -2, errno.EINVAL)

    def claim_interface(self, dev_handle: _Handle, intf: int) -> None:
        with self._lock:
            self._check(dev_handle)

    def release_interface(self, dev_handle: _Handle, intf: int) -> None:
        with self._lock:
            self._check(dev_handle)

    def reset_device(self, dev_handle: _Handle) -> None:
        with self._lock:
            self._check(dev_handle)
            self._replies.clear()

    def clear_halt(self, dev_handle: _Handle, ep: int) -> None:
        with self._lock:
            self._check(dev_handle)

    def is_kernel_driver_active(self, dev_handle: _Handle, intf: int) -> bool:
        return False

    def detach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        return None

    def attach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        return None

    def bulk_write(
        self, dev_handle: _Handle, ep: int, intf: int, data: array.array[int], timeout: int
    ) -> int:
        with self._write_event:
            self._check(dev_handle)
            if ep != OUT_EP:
                raise usb.core.USBError("Invalid endpoint", -2, errno.EINVAL)
            payload = bytes(data)
            if len(payload) == 3 and payload[:2] == b"\x10\x04" and 1 <= payload[2] <= 4:
                self.status_queries.append(payload[2])
                if not self.silent:
                    self._replies.append(self.status_byte(payload[2]))
                return len(payload)
            self.received += payload
            if not self.online:
                self.received_while_offline += payload
            self._write_event.notify_all()
            return len(payload)

    def bulk_read(
        self, dev_handle: _Handle, ep: int, intf: int, buff: array.array[int], timeout: int
    ) -> int:
        with self._lock:
            self._check(dev_handle)
            if ep != IN_EP:
                raise usb.core.USBError("Invalid endpoint", -2, errno.EINVAL)
            if not self._replies:
                raise usb.core.USBTimeoutError(
                    "Operation timed out", _LIBUSB_ERROR_TIMEOUT, errno.ETIMEDOUT
                )
            count = min(len(buff), len(self._replies))
            for i in range(count):
                buff[i] = self._replies[i]
            del self._replies[:count]
            return count

    def __repr__(self) -> str:
        state = "unplugged" if not self._plugged else ("online" if self.online else "offline")
        return f"<EmulatedUsbPrinter {self.vendor_id:04x}:{self.product_id:04x} {state}>"


def usb_printer_for(backend: EmulatedUsbPrinter, **kwargs: Any) -> Any:
    """A real ``escpos.printer.Usb`` bound to ``backend`` (kwargs go to ``Usb``)."""
    from escpos.printer import Usb

    kwargs.setdefault("timeout", 1000)
    return Usb(
        backend.vendor_id,
        backend.product_id,
        usb_args={"backend": backend},
        **kwargs,
    )
