"""Device drivers of the kiosk: ID-card reader, QR scanners, receipt printer.

Each driver talks to its device through the real library (pyserial, pyusb +
python-escpos, python-evdev); protocol logic is sans-I/O and lives apart from
the thin adapters. ``firmware_mocks`` provides what stands at the far end in
tests and in the demo.
"""


class DeviceError(Exception):
    """Base class of every error raised by the ``drivers`` package."""
