"""``aps-agent selftest``: exercise every configured device, the link to central, the box.

Theory of operation
-------------------
The technician runs it on site with the agent stopped (``systemctl stop
aps-agent``): the test holds the devices the agent would hold, and it logs in
to the broker with the kiosk's own identity (the broker binds the client id to
the certificate, so a running agent would be kicked off for the moment). Each
check is a function returning a :class:`edge_agent.check_report.CheckResult`;
:func:`run_selftest` runs them in the order a technician walks the box:

1. **identity**: provisioned? (:func:`edge_agent.host_checks.check_identity`)
2. **printer**: status poll, then a test slip through the real receipt driver
   (:class:`drivers.printer.ReceiptPrinter`), spooled in a temporary directory
   so it never shows among the receipts waiting for a reprint.
3. **card_reader**: opened and asked for its status; then (unless
   ``interactive`` is off) the technician is asked to put a card on it within
   ``timeout_s``; the chip is read and the name and the ID number, masked as on
   paper (last four digits), are shown.
4. **scanner**: the technician is asked to scan a code within ``timeout_s``;
   a CCCD QR shows the name and masked number, any other code its length.
5. **hid_scanner**, **help_button**: present and openable (they deliver only
   what a person types; the doctor's device check).
6. **document_camera**: one frame, as a page JPEG.
7. **broker**: connect with ``[mqtt]`` exactly as the agent does (TLS, client
   certificate), subscribe to ``down/state``, publish a state request with a
   new id and wait up to ``timeout_s`` for central's reply to that id: a real
   round trip through the broker and central's downlink service, not only a
   TCP connection. The reply's ``ts`` is central's clock.
8. **clock**: HTTP ``Date`` of ``[identity] central_url``; a kiosk without one
   (not provisioned) uses the round trip's ``ts`` instead.
9. **disk**, **permissions** (:mod:`edge_agent.host_checks`).

Prompts go through ``say`` (the CLI writes them to stderr, so ``--json`` keeps
stdout one object). Tests hand in a ``say`` that works the emulated device
when it hears its prompt, as a technician would. ``hardware`` carries the
seams the drivers already have for emulated devices: a pyusb backend for the
printer and a frame source for the camera.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from drivers.card_reader import CardReader, CardReadError, ReaderNotAnswering
from drivers.card_reader_protocol import CardInserted
from drivers.document_camera import BlankFrame, CameraError, DocumentCamera, FrameSource
from drivers.identity import Identity
from drivers.printer import PrinterFault, PrinterState, ReceiptPrinter
from drivers.receipt import ReceiptData
from drivers.scanner_serial import CodeScanned, IdentityScanned, SerialScanner
from edge_agent.check_report import CheckResult, Words, duration, size
from edge_agent.config import AgentConfig
from edge_agent.doctor import check_device_node
from edge_agent.host_checks import (
    Policy,
    check_clock,
    check_disk,
    check_identity,
    check_permissions,
    clock_from_offset,
)
from sync.downlink import (
    DOWN_STATE,
    DownlinkError,
    StateRequest,
    decode_state_reply,
    down_topic,
    up_topic,
)
from sync.ids import new_ulid
from sync.mqtt_link import make_paho_client

__all__ = ["Hardware", "RoundTrip", "Say", "check_broker", "run_selftest"]

Say = Callable[[Words], None]

#: The test slip's code: letters the receipt driver accepts, no dossier's shape.
TEST_SLIP_CODE = "TEST-SELFTEST"


@dataclass(frozen=True, kw_only=True)
class Hardware:
    """Seams for emulated devices (tests, the demo); ``None``: the real ones."""

    usb_backend: object | None = None
    camera_source: FrameSource | None = None


_NOT_CONFIGURED = Words(vi="Không cấu hình thiết bị này.", en="Not configured.")
_SKIPPED = Words(
    vi="Bỏ qua phần cần người thao tác (--skip-interactive).",
    en="The part that needs a person was skipped (--skip-interactive).",
)


def _skip(name: str, seen: Words = _NOT_CONFIGURED) -> CheckResult:
    return CheckResult(name=name, status="skip", seen=seen)


def _who(identity: Identity) -> Words:
    masked = identity.masked_id
    return Words(
        vi=f"{identity.full_name}, số giấy tờ {masked}", en=f"{identity.full_name}, ID {masked}"
    )


# -- printer ------------------------------------------------------------------------------
_PRINTER_WORDS: dict[PrinterState, tuple[Words, Words]] = {
    PrinterState.UNPLUGGED: (
        Words(vi="Không tìm thấy máy in.", en="The printer was not found."),
        Words(
            vi="Kiểm tra cáp USB và nguồn của máy in, bật máy in rồi kiểm tra lại.",
            en="Check the printer's USB cable and power, switch it on and check again.",
        ),
    ),
    PrinterState.PAPER_OUT: (
        Words(vi="Máy in hết giấy.", en="The printer is out of paper."),
        Words(vi="Lắp cuộn giấy mới rồi kiểm tra lại.", en="Load a new roll and check again."),
    ),
    PrinterState.COVER_OPEN: (
        Words(vi="Nắp máy in đang mở.", en="The printer's cover is open."),
        Words(vi="Đóng nắp máy in rồi kiểm tra lại.", en="Close the cover and check again."),
    ),
    PrinterState.OFFLINE: (
        Words(vi="Máy in không trả lời.", en="The printer does not answer."),
        Words(
            vi="Tắt máy in, chờ mười giây, bật lại rồi kiểm tra lại.",
            en="Switch the printer off, wait ten seconds, switch it on and check again.",
        ),
    ),
}


def _printer_fault(state: PrinterState, detail: str | None) -> CheckResult:
    seen, fix = _PRINTER_WORDS.get(state, _PRINTER_WORDS[PrinterState.OFFLINE])
    return CheckResult(name="printer", status="fail", seen=seen, fix=fix, detail=detail)


def selftest_slip(cfg: AgentConfig, now: datetime) -> ReceiptData:
    """The slip the self-test prints: the office's header, no citizen, no real code."""
    return ReceiptData(
        office_name=cfg.kiosk.office_name,
        procedure_name="PHIẾU IN THỬ - KIỂM TRA MÁY IN",
        dossier_code=TEST_SLIP_CODE,
        citizen_name="Phiếu thử, không phải hồ sơ",
        id_number="000000000000",
        filed_at=now,
        due=None,
        fee_vnd=0,
        tracking_url_or_code=TEST_SLIP_CODE,
        payment=None,
        hotline=cfg.kiosk.hotline,
        paper_width_mm=cfg.devices.paper_width_mm,
    )


def check_printer(cfg: AgentConfig, hardware: Hardware) -> CheckResult:
    if not cfg.devices.printer:
        return _skip("printer")
    with tempfile.TemporaryDirectory(prefix="aps-selftest-") as spool:
        try:
            printer = ReceiptPrinter(
                cfg.devices.printer, spool_dir=Path(spool), usb_backend=hardware.usb_backend
            )
        except Exception as exc:  # a set-up fault (no libusb, bad profile): say it plainly
            return CheckResult(
                name="printer",
                status="fail",
                seen=Words(vi="Không dùng được máy in.", en="The printer cannot be used."),
                fix=Words(
                    vi="Chạy aps-agent doctor và gửi kết quả cho bộ phận hỗ trợ.",
                    en="Run aps-agent doctor and send its output to support.",
                ),
                detail=f"{type(exc).__name__}: {exc}",
            )
        try:
            try:
                status = printer.poll_status()
            except Exception as exc:  # e.g. pyusb without a backend
                return CheckResult(
                    name="printer",
                    status="fail",
                    seen=Words(vi="Không hỏi được máy in.", en="Could not ask the printer."),
                    fix=Words(
                        vi="Cài thư viện USB: apt-get install libusb-1.0-0, rồi kiểm tra lại.",
                        en="Install the USB library: apt-get install libusb-1.0-0, then check "
                        "again.",
                    ),
                    detail=f"{type(exc).__name__}: {exc}",
                )
            if not status.can_print:
                return _printer_fault(status.state, status.last_error)
            try:
                status = printer.print_receipt(selftest_slip(cfg, datetime.now(UTC)))
            except PrinterFault as exc:
                return _printer_fault(exc.status.state, str(exc))
        finally:
            printer.close()
    near_end = status.state is PrinterState.PAPER_NEAR_END
    return CheckResult(
        name="printer",
        status="warn" if near_end else "ok",
        seen=Words(
            vi="Đã in phiếu thử; xem phiếu có rõ chữ và có dấu không."
            + (" Giấy sắp hết." if near_end else ""),
            en="A test slip was printed; check that it is sharp and the accents show."
            + (" Paper is nearly out." if near_end else ""),
        ),
        fix=Words(vi="Chuẩn bị cuộn giấy mới.", en="Have a new roll ready.") if near_end else None,
    )


# -- card reader --------------------------------------------------------------------------
_READER_CABLE = Words(
    vi="Kiểm tra cáp USB của đầu đọc thẻ, rút ra cắm lại rồi kiểm tra lại.",
    en="Check the card reader's USB cable, unplug and plug it back, then check again.",
)


def check_card_reader(
    cfg: AgentConfig, *, interactive: bool, timeout_s: float, say: Say
) -> CheckResult:
    url = cfg.devices.card_reader
    if not url:
        return _skip("card_reader")
    reader = CardReader(url)
    try:
        reader.open()
    except OSError as exc:
        return CheckResult(
            name="card_reader",
            status="fail",
            seen=Words(vi="Không mở được đầu đọc thẻ.", en="The card reader cannot be opened."),
            fix=_READER_CABLE,
            detail=str(exc),
        )
    try:
        try:
            present = reader.card_present()
        except (ReaderNotAnswering, CardReadError) as exc:
            return CheckResult(
                name="card_reader",
                status="fail",
                seen=Words(vi="Đầu đọc thẻ không trả lời.", en="The card reader does not answer."),
                fix=_READER_CABLE,
                detail=str(exc),
            )
        if not interactive:
            return CheckResult(
                name="card_reader",
                status="ok",
                seen=Words(
                    vi="Đầu đọc thẻ trả lời. " + _SKIPPED.vi,
                    en="The card reader answers. " + _SKIPPED.en,
                ),
            )
        if not present:
            wait_vi, wait_en = duration(timeout_s, "vi"), duration(timeout_s, "en")
            say(
                Words(
                    vi=f"Hãy đặt một thẻ căn cước lên đầu đọc thẻ (chờ tối đa {wait_vi}).",
                    en=f"Put an ID card on the card reader (waiting up to {wait_en}).",
                )
            )
            deadline = time.monotonic() + timeout_s
            while not any(isinstance(n, CardInserted) for n in reader.poll(0.2)):
                if time.monotonic() >= deadline:
                    return CheckResult(
                        name="card_reader",
                        status="fail",
                        seen=Words(
                            vi=f"Không có thẻ nào được đặt lên trong {wait_vi}.",
                            en=f"No card was put on the reader within {wait_en}.",
                        ),
                        fix=Words(
                            vi="Chạy lại và đặt thẻ khi được hỏi; nếu đã đặt thẻ mà vẫn lỗi, "
                            "kiểm tra cáp của đầu đọc.",
                            en="Run it again and put the card on when asked; if it still "
                            "fails with a card on it, check the reader's cable.",
                        ),
                    )
        try:
            identity = reader.read_identity()
        except ReaderNotAnswering as exc:
            return CheckResult(
                name="card_reader",
                status="fail",
                seen=Words(
                    vi="Đầu đọc thẻ ngừng trả lời khi đọc thẻ.",
                    en="The card reader stopped answering while reading the card.",
                ),
                fix=_READER_CABLE,
                detail=str(exc),
            )
        except CardReadError as exc:
            return CheckResult(
                name="card_reader",
                status="fail",
                seen=Words(
                    vi=f"Không đọc được thẻ: {exc.citizen_text}", en="The card was not read."
                ),
                fix=Words(
                    vi="Đặt lại thẻ cho ngay ngắn, giữ yên đến khi đọc xong, rồi chạy lại.",
                    en="Put the card back squarely, keep it still until read, and run it again.",
                ),
                detail=str(exc),
            )
    finally:
        reader.close()
    who = _who(identity)
    return CheckResult(
        name="card_reader",
        status="ok",
        seen=Words(vi=f"Đọc được thẻ: {who.vi}.", en=f"Read the card: {who.en}."),
    )


# -- scanner ------------------------------------------------------------------------------
def check_scanner(
    cfg: AgentConfig, *, interactive: bool, timeout_s: float, say: Say
) -> CheckResult:
    url = cfg.devices.scanner
    if not url:
        return _skip("scanner")
    scanner = SerialScanner(url)
    try:
        scanner.open()
    except OSError as exc:
        return CheckResult(
            name="scanner",
            status="fail",
            seen=Words(vi="Không mở được máy quét mã.", en="The scanner cannot be opened."),
            fix=Words(
                vi="Kiểm tra cáp USB của máy quét; máy quét phải ở chế độ cổng nối tiếp "
                "(USB-CDC), xem hướng dẫn của máy.",
                en="Check the scanner's USB cable; it must be in serial (USB-CDC) mode, see "
                "its manual.",
            ),
            detail=str(exc),
        )
    try:
        if not interactive:
            return CheckResult(
                name="scanner",
                status="ok",
                seen=Words(
                    vi="Máy quét mở được. " + _SKIPPED.vi, en="The scanner opens. " + _SKIPPED.en
                ),
            )
        wait_vi, wait_en = duration(timeout_s, "vi"), duration(timeout_s, "en")
        say(
            Words(
                vi=f"Hãy quét mã QR trên thẻ căn cước, hoặc một mã bất kỳ (chờ tối đa {wait_vi}).",
                en=f"Scan the QR code of an ID card, or any code (waiting up to {wait_en}).",
            )
        )
        event = scanner.read_scan(timeout_s)
    except OSError as exc:
        return CheckResult(
            name="scanner",
            status="fail",
            seen=Words(vi="Máy quét bị ngắt khi đang quét.", en="The scanner was lost."),
            fix=Words(vi="Cắm lại cáp của máy quét.", en="Plug the scanner's cable back in."),
            detail=str(exc),
        )
    finally:
        scanner.close()
    if event is None:
        return CheckResult(
            name="scanner",
            status="fail",
            seen=Words(
                vi=f"Không quét được mã nào trong {wait_vi}.",
                en=f"Nothing was scanned within {wait_en}.",
            ),
            fix=Words(
                vi="Chạy lại và quét khi được hỏi; nếu máy quét có kêu mà vẫn lỗi, đặt máy "
                "quét về chế độ cổng nối tiếp (USB-CDC).",
                en="Run it again and scan when asked; if the scanner beeps and it still fails, "
                "set it to serial (USB-CDC) mode.",
            ),
        )
    if isinstance(event, IdentityScanned):
        who = _who(event.identity)
        return CheckResult(
            name="scanner",
            status="ok",
            seen=Words(vi=f"Quét được thẻ: {who.vi}.", en=f"Scanned the card: {who.en}."),
        )
    if isinstance(event, CodeScanned):
        n = len(event.text)
        return CheckResult(
            name="scanner",
            status="ok",
            seen=Words(
                vi=f"Quét được một mã dài {n} ký tự.", en=f"Scanned a code of {n} characters."
            ),
        )
    return CheckResult(
        name="scanner",
        status="warn",
        seen=Words(
            vi="Máy quét đọc được, nhưng mã quét không hợp lệ.",
            en="The scanner reads, but the code scanned was not valid.",
        ),
        fix=Words(
            vi="Quét lại bằng mã QR trên thẻ căn cước.", en="Scan the QR code of an ID card."
        ),
        detail=event.reason,
    )


# -- camera -------------------------------------------------------------------------------
def check_camera(cfg: AgentConfig, hardware: Hardware, *, timeout_s: float) -> CheckResult:
    url = cfg.devices.document_camera
    if not url:
        return _skip("document_camera")
    camera = DocumentCamera(url, source=hardware.camera_source, frame_timeout_s=timeout_s)
    try:
        page = camera.capture(max_bytes=cfg.devices.page_max_bytes)
    except BlankFrame as exc:
        return CheckResult(
            name="document_camera",
            status="warn",
            seen=Words(vi="Camera chụp được nhưng ảnh trắng trơn.", en="The picture is blank."),
            fix=Words(
                vi="Mở nắp ống kính, bật đèn, đặt một tờ giấy lên khay rồi chạy lại.",
                en="Take the lens cap off, switch the light on, put a page on the tray, run again.",
            ),
            detail=str(exc),
        )
    except (CameraError, OSError) as exc:
        return CheckResult(
            name="document_camera",
            status="fail",
            seen=Words(vi="Camera không chụp được.", en="The camera took no picture."),
            fix=Words(
                vi="Kiểm tra cáp USB của camera, rút ra cắm lại rồi kiểm tra lại.",
                en="Check the camera's USB cable, unplug and plug it back, then check again.",
            ),
            detail=str(exc),
        )
    kb_vi, kb_en = size(len(page.jpeg), "vi"), size(len(page.jpeg), "en")
    return CheckResult(
        name="document_camera",
        status="ok",
        seen=Words(
            vi=f"Chụp được một ảnh {page.width} x {page.height} điểm ảnh ({kb_vi}).",
            en=f"Took one picture, {page.width} by {page.height} pixels ({kb_en}).",
        ),
    )


# -- broker round trip --------------------------------------------------------------------
@dataclass
class RoundTrip:
    """What the broker check saw (``central_offset_s``: central's clock minus ours)."""

    result: CheckResult
    central_offset_s: float | None = None


def _broker_fail(seen: Words, fix: Words, detail: str) -> RoundTrip:
    return RoundTrip(CheckResult(name="broker", status="fail", seen=seen, fix=fix, detail=detail))


_NETWORK_FIX = Words(
    vi="Kiểm tra mạng (cáp, Wi-Fi) và địa chỉ máy chủ trong tệp cấu hình; nếu mạng tốt, gọi "
    "bộ phận hỗ trợ.",
    en="Check the network (cable, Wi-Fi) and the broker's address in the configuration; if "
    "the network is fine, call support.",
)


def check_broker(cfg: AgentConfig, *, timeout_s: float) -> RoundTrip:
    """Log in as the kiosk, ask central for state, wait for its answer to this request."""
    import ssl

    import paho.mqtt.client as mqtt

    settings = cfg.mqtt.settings()
    where = f"{settings.host}:{settings.port}"
    kiosk = cfg.kiosk.id
    request = StateRequest(
        kiosk=kiosk, request=new_ulid(), cursor=0, office=cfg.kiosk.agency, limit=1
    )
    connack: list[Any] = []
    connected, answered = threading.Event(), threading.Event()
    reply_at: list[tuple[float, str | None]] = []
    sent_at: list[float] = []
    refused: list[str] = []

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        connack.append(rc)
        connected.set()
        if not rc.is_failure:
            client.subscribe(down_topic(kiosk, DOWN_STATE), qos=1)

    def on_subscribe(
        client: mqtt.Client, userdata: Any, mid: int, codes: list[Any], props: Any
    ) -> None:
        if any(code.is_failure for code in codes):
            refused.append(str(codes[0]))
            answered.set()
            return
        sent_at.append(time.time())
        client.publish(up_topic(kiosk, "state-request"), request.encode(), qos=1)

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            reply = decode_state_reply(bytes(msg.payload))
        except DownlinkError:
            return
        if reply.request == request.request:
            reply_at.append((time.time(), reply.ts))
            answered.set()

    def on_disconnect(client: mqtt.Client, *args: Any) -> None:
        connected.set()

    client = make_paho_client(kiosk, settings)
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_disconnect = on_disconnect
    client.connect_timeout = timeout_s
    started = time.monotonic()
    try:
        client.connect(settings.host, settings.port, keepalive=settings.keepalive_s)
    except ssl.SSLError as exc:
        return _broker_fail(
            Words(
                vi=f"Máy chủ tin nhắn {where} có chứng chỉ không hợp lệ với kiosk này.",
                en=f"The broker {where} has a certificate this kiosk does not trust.",
            ),
            Words(
                vi="Kiểm tra mqtt.host và mqtt.tls_ca trong tệp cấu hình; nếu đúng, gọi bộ phận "
                "hỗ trợ.",
                en="Check mqtt.host and mqtt.tls_ca in the configuration; if right, call support.",
            ),
            f"TLS: {exc}",
        )
    except OSError as exc:
        return _broker_fail(
            Words(
                vi=f"Không kết nối được máy chủ tin nhắn {where}.",
                en=f"Cannot connect to the broker {where}.",
            ),
            _NETWORK_FIX,
            f"{type(exc).__name__}: {exc}",
        )
    client.loop_start()
    try:
        connected.wait(timeout_s)
        if not connack or connack[0].is_failure:
            return _broker_fail(
                Words(
                    vi=f"Máy chủ tin nhắn {where} không cho kiosk đăng nhập.",
                    en=f"The broker {where} did not let this kiosk log in.",
                ),
                Words(
                    vi="Chứng chỉ của kiosk có thể đã hết hạn hoặc bị thu hồi: chạy aps-agent "
                    "doctor, rồi gọi bộ phận hỗ trợ để cấp lại (aps-agent provision).",
                    en="The kiosk's certificate may be expired or revoked: run aps-agent doctor, "
                    "then call support to enrol it again (aps-agent provision).",
                ),
                f"CONNACK: {connack[0] if connack else 'none, connection closed or timed out'}",
            )
        wait_vi, wait_en = duration(timeout_s, "vi"), duration(timeout_s, "en")
        left = max(0.0, timeout_s - (time.monotonic() - started))
        if answered.wait(left) and refused:
            return _broker_fail(
                Words(
                    vi=f"Máy chủ tin nhắn {where} không cho kiosk này nhận tin: kiosk chưa được "
                    "đăng ký hoặc đã bị thu hồi.",
                    en=f"The broker {where} does not let this kiosk receive: it is not enrolled "
                    "or was revoked.",
                ),
                Words(
                    vi="Gọi bộ phận hỗ trợ để kiểm tra kiosk trên máy chủ trung tâm, rồi đăng ký "
                    "lại (aps-agent provision).",
                    en="Call support to check the kiosk at central, then enrol it again "
                    "(aps-agent provision).",
                ),
                f"SUBACK refused: {refused[0]}",
            )
        if not answered.is_set():
            return _broker_fail(
                Words(
                    vi=f"Kết nối được máy chủ tin nhắn, nhưng máy chủ trung tâm không trả lời "
                    f"trong {wait_vi}.",
                    en=f"Connected to the broker, but central did not answer within {wait_en}.",
                ),
                Words(
                    vi="Máy chủ trung tâm có thể đang dừng: gọi bộ phận hỗ trợ; kiosk vẫn nhận "
                    "hồ sơ và gửi sau.",
                    en="Central may be down: call support; the kiosk keeps filing and sends later.",
                ),
                f"no state reply to request {request.request} within {timeout_s:g} s",
            )
    finally:
        client.disconnect()  # queued for the loop thread, which writes it and then ends
        client.loop_stop()
    got, ts = reply_at[0]
    took = got - sent_at[0]
    offset: float | None = None
    if ts:
        try:
            offset = datetime.fromisoformat(ts).timestamp() - (got + sent_at[0]) / 2
        except ValueError:
            offset = None
    return RoundTrip(
        CheckResult(
            name="broker",
            status="ok",
            seen=Words(
                vi=f"Máy chủ trung tâm đã trả lời, mất {duration(took, 'vi')}.",
                en=f"Central answered in {duration(took, 'en')}.",
            ),
            detail=f"state request {request.request} answered via {where}",
        ),
        central_offset_s=offset,
    )


# -- all of it ----------------------------------------------------------------------------
def run_selftest(
    cfg: AgentConfig,
    *,
    policy: Policy,
    hardware: Hardware | None = None,
    interactive: bool = True,
    timeout_s: float = 30.0,
    say: Say = lambda words: None,
) -> list[CheckResult]:
    """Every check, in the order a technician walks the box; see the module docstring."""
    hw = hardware or Hardware()
    results = [
        check_identity(cfg),
        check_printer(cfg, hw),
        check_card_reader(cfg, interactive=interactive, timeout_s=timeout_s, say=say),
        check_scanner(cfg, interactive=interactive, timeout_s=timeout_s, say=say),
    ]
    for name in ("hid_scanner", "help_button"):
        path = getattr(cfg.devices, name)
        if path:
            results.append(check_device_node(name, path, policy))
    results.append(check_camera(cfg, hw, timeout_s=timeout_s))
    trip = check_broker(cfg, timeout_s=timeout_s)
    results.append(trip.result)
    if not cfg.identity.central_url and trip.central_offset_s is not None:
        results.append(clock_from_offset(trip.central_offset_s, "central's state reply"))
    else:
        results.append(check_clock(cfg, timeout_s=timeout_s))
    results.append(check_disk(cfg))
    results.append(check_permissions(cfg, policy))
    return results
