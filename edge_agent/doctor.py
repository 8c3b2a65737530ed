"""``aps-agent doctor``: what is wrong with this kiosk, and the fix, without touching anything.

Theory of operation
-------------------
The doctor never waits for a person, never writes, never holds a device and
never logs in to the broker, so it is safe while the agent runs (a second MQTT
session with the kiosk's client id would kick the agent off). Each check
returns a :class:`edge_agent.check_report.CheckResult` whose ``fix`` is a
command to run or a thing to do, in words:

- **config**: it loads (the CLI reports a file that does not as the only
  check), and what is allowed but unsafe (``check-config``'s warnings).
- **identity**, **disk**, **permissions**, **clock**: :mod:`edge_agent.host_checks`.
- **devices**: each configured device is present and openable by the service
  user or one of its groups (what the udev rules grant): a device node by its
  mode, owner and group; a USB printer by enumeration (pyusb); a network
  printer by a TCP connection. The node is stat'ed, never opened, so a device
  the agent holds exclusively is not disturbed.
- **broker_tls**: TCP connection and TLS handshake with the kiosk's client
  certificate against ``[mqtt] tls_ca`` (host name checked, as paho does);
  then a short read: a broker that refuses the certificate sends an alert
  (TLS 1.3 reports it only after the handshake), one that accepts it waits for
  CONNECT, which the doctor never sends.
- **central_https**: one GET of ``[identity] central_url``; any HTTP answer
  means it is reachable.
- **certificate**: ``[mqtt] tls_cert`` with ``cryptography``: not yet valid or
  expired fails, fewer than :data:`CERT_WARN_DAYS` days left warns, a
  certificate not directly issued by a CA in ``tls_ca`` fails.
- **queue**: the outbox opened read-only (:meth:`sync.outbox.Outbox.open_readonly`):
  records waiting, the age of the oldest, records central refused.
"""

from __future__ import annotations

import os
import pwd
import socket
import ssl
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.check_report import CheckResult, Words, duration
from edge_agent.config import AgentConfig
from edge_agent.host_checks import (
    PROVISION_FIX,
    Policy,
    check_clock,
    check_disk,
    check_identity,
    check_permissions,
    tls_context,
)
from sync.outbox import Outbox, OutboxError, OutboxMissing

__all__ = [
    "CERT_WARN_DAYS",
    "QUEUE_STALE_S",
    "check_broker_tls",
    "check_certificate",
    "check_config_warnings",
    "check_device_node",
    "check_devices",
    "check_queue",
    "run_doctor",
]

#: A client certificate with fewer days left than this is a warning.
CERT_WARN_DAYS = 30
#: A record waiting longer than this (seconds) means the kiosk is not syncing.
QUEUE_STALE_S = 3600.0
#: How long the broker is given to refuse the certificate after the handshake.
ALERT_WAIT_S = 0.5


def check_config_warnings(cfg: AgentConfig, path: Path) -> CheckResult:
    warnings = [*cfg.mqtt.warnings(path), *cfg.payment.warnings()]
    if not warnings:
        return CheckResult(
            name="config",
            status="ok",
            seen=Words(vi="Tệp cấu hình đọc được, không có cảnh báo.", en="Loads, no warnings."),
        )
    n = len(warnings)
    return CheckResult(
        name="config",
        status="warn",
        seen=Words(
            vi=f"Tệp cấu hình đọc được, có {n} cảnh báo.", en=f"It loads, with {n} warning(s)."
        ),
        fix=Words(
            vi="Xem cảnh báo bằng lệnh: aps-agent check-config, rồi sửa tệp cấu hình theo đó.",
            en="; ".join(warnings),
        ),
        detail="; ".join(warnings),
    )


def config_unloadable(error: str) -> CheckResult:
    return CheckResult(
        name="config",
        status="fail",
        seen=Words(vi="Tệp cấu hình không đọc được hoặc sai.", en="The configuration is invalid."),
        fix=Words(
            vi="Chạy lệnh: aps-agent check-config; lỗi in ra nói rõ dòng nào cần sửa.",
            en=error,
        ),
        detail=error,
    )


# -- devices ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Account:
    uid: int
    groups: frozenset[int]


def _account(name: str) -> _Account | None:
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return None
    return _Account(pw.pw_uid, frozenset(os.getgrouplist(name, pw.pw_gid)))


def _node_path(url: str) -> str | None:
    """The device node a device setting names, or None for a pyserial URL (not a file)."""
    if url.startswith("/"):
        return url.split("?", 1)[0]
    if url.startswith(("serial://", "v4l2://")):
        return "/" + url.split("://", 1)[1].split("?", 1)[0].lstrip("/")
    return None


def _can_open(st: os.stat_result, account: _Account) -> bool:
    mode = stat.S_IMODE(st.st_mode)
    if account.uid == 0:
        return True
    if st.st_uid == account.uid and mode & 0o600 == 0o600:
        return True
    if st.st_gid in account.groups and mode & 0o060 == 0o060:
        return True
    return mode & 0o006 == 0o006


def check_device_node(name: str, url: str, policy: Policy) -> CheckResult:
    """A device node exists and the service user may read and write it."""
    path = _node_path(url)
    if path is None:
        return CheckResult(
            name=name,
            status="skip",
            seen=Words(
                vi="Thiết bị đặt bằng địa chỉ đặc biệt, không kiểm tra được ở đây.",
                en="Named by a special address; not checked here.",
            ),
            detail=url,
        )
    try:
        st = os.stat(path)
    except OSError as exc:
        return CheckResult(
            name=name,
            status="fail",
            seen=Words(vi="Không thấy thiết bị.", en="The device is not there."),
            fix=Words(
                vi="Cắm lại cáp USB của thiết bị; nếu vẫn không thấy, chạy: udevadm trigger, "
                f"rồi kiểm tra {path} có tồn tại.",
                en=f"Plug the device's USB cable back in; if still missing, run udevadm trigger "
                f"and check that {path} exists.",
            ),
            detail=f"{path}: {exc.strerror}",
        )
    account = _account(policy.service_user)
    if account is not None and not _can_open(st, account):
        try:
            import grp

            group = grp.getgrgid(st.st_gid).gr_name
        except KeyError:
            group = str(st.st_gid)
        return CheckResult(
            name=name,
            status="fail",
            seen=Words(
                vi=f"Thiết bị có, nhưng tài khoản {policy.service_user} không được dùng nó.",
                en=f"The device is there, but the account {policy.service_user} may not use it.",
            ),
            fix=Words(
                vi=f"Chạy lệnh: usermod -aG {group} {policy.service_user}, rồi khởi động lại "
                "kiosk (hoặc cài lại luật udev của kiosk).",
                en=f"Run usermod -aG {group} {policy.service_user}, then restart the kiosk (or "
                "install the kiosk's udev rules again).",
            ),
            detail=f"{path}: uid {st.st_uid} gid {st.st_gid} mode {stat.S_IMODE(st.st_mode):04o}",
        )
    return CheckResult(
        name=name,
        status="ok",
        seen=Words(vi="Thiết bị có và dùng được.", en="Present and usable."),
        detail=path,
    )


def check_printer_present(
    cfg: AgentConfig, policy: Policy, usb_backend: object | None
) -> CheckResult:
    from drivers.printer import parse_printer_url

    url = parse_printer_url(cfg.devices.printer)
    missing = CheckResult(
        name="printer",
        status="fail",
        seen=Words(vi="Không thấy máy in.", en="The printer is not there."),
        fix=Words(
            vi="Kiểm tra cáp và nguồn của máy in, bật máy in rồi kiểm tra lại.",
            en="Check the printer's cable and power, switch it on and check again.",
        ),
    )
    if url.scheme == "serial":
        return check_device_node("printer", url.path, policy)
    if url.scheme == "tcp":
        try:
            socket.create_connection((url.host, url.port), timeout=url.timeout_s).close()
        except OSError as exc:
            return CheckResult(
                name="printer",
                status="fail",
                seen=missing.seen,
                fix=Words(
                    vi="Kiểm tra cáp mạng và nguồn của máy in.",
                    en="Check the printer's network cable and power.",
                ),
                detail=f"{url.host}:{url.port}: {exc}",
            )
        return CheckResult(name="printer", status="ok", seen=Words(vi="Máy in có.", en="Present."))
    import usb.core

    try:
        found = usb.core.find(idVendor=url.vendor_id, idProduct=url.product_id, backend=usb_backend)
    except usb.core.NoBackendError:
        return CheckResult(
            name="printer",
            status="fail",
            seen=Words(vi="Thiếu thư viện USB.", en="The USB library is missing."),
            fix=Words(
                vi="Chạy lệnh: apt-get install libusb-1.0-0", en="Run: apt-get install libusb-1.0-0"
            ),
        )
    if found is None:
        return missing
    return CheckResult(name="printer", status="ok", seen=Words(vi="Máy in có.", en="Present."))


def check_devices(
    cfg: AgentConfig, policy: Policy, usb_backend: object | None = None
) -> list[CheckResult]:
    out: list[CheckResult] = []
    d = cfg.devices
    if d.printer:
        out.append(check_printer_present(cfg, policy, usb_backend))
    for name in ("card_reader", "scanner", "hid_scanner", "help_button", "document_camera"):
        value = getattr(d, name)
        if value:
            out.append(check_device_node(name, value, policy))
    return out


# -- connectivity -------------------------------------------------------------------------
def check_broker_tls(cfg: AgentConfig, *, timeout_s: float) -> CheckResult:
    m = cfg.mqtt
    where = f"{m.host}:{m.port}"
    try:
        sock = socket.create_connection((m.host, m.port), timeout=timeout_s)
    except OSError as exc:
        return CheckResult(
            name="broker_tls",
            status="fail",
            seen=Words(
                vi=f"Không kết nối được máy chủ tin nhắn {where}.",
                en=f"Cannot connect to the broker {where}.",
            ),
            fix=Words(
                vi="Kiểm tra mạng (cáp, Wi-Fi) và mqtt.host, mqtt.port trong tệp cấu hình; "
                "nếu mạng tốt, gọi bộ phận hỗ trợ.",
                en="Check the network (cable, Wi-Fi) and mqtt.host, mqtt.port in the "
                "configuration; if the network is fine, call support.",
            ),
            detail=f"{where}: {exc}",
        )
    if m.tls_ca is None:
        sock.close()
        return CheckResult(
            name="broker_tls",
            status="warn",
            seen=Words(
                vi=f"Kết nối được {where}, nhưng không mã hoá.",
                en=f"Connected to {where}, but without encryption.",
            ),
            fix=Words(
                vi="Đăng ký lại kiosk (aps-agent provision) để có chứng chỉ và bật mã hoá.",
                en="Provision the kiosk (aps-agent provision) to get certificates and TLS.",
            ),
        )
    context = ssl.create_default_context(cafile=str(m.tls_ca))
    if m.tls_cert is not None:
        context.load_cert_chain(str(m.tls_cert), None if m.tls_key is None else str(m.tls_key))
    refused = Words(
        vi=f"Máy chủ tin nhắn {where} từ chối chứng chỉ của kiosk.",
        en=f"The broker {where} refused this kiosk's certificate.",
    )
    renew = Words(
        vi="Chứng chỉ có thể đã hết hạn hoặc bị thu hồi: xin mã đăng ký mới ở máy chủ trung "
        "tâm và chạy aps-agent provision.",
        en="The certificate may be expired or revoked: get a new enrolment token from central "
        "and run aps-agent provision.",
    )
    try:
        with context.wrap_socket(sock, server_hostname=m.host) as tls:
            tls.settimeout(ALERT_WAIT_S)
            try:
                data = tls.recv(1)
            except TimeoutError:
                data = None  # the broker waits for CONNECT: it took the certificate
            if data == b"":
                return CheckResult(
                    name="broker_tls",
                    status="fail",
                    seen=refused,
                    fix=renew,
                    detail="closed after the handshake",
                )
    except ssl.SSLCertVerificationError as exc:
        return CheckResult(
            name="broker_tls",
            status="fail",
            seen=Words(
                vi=f"Chứng chỉ của máy chủ tin nhắn {where} không đáng tin với kiosk này.",
                en=f"The broker {where} shows a certificate this kiosk does not trust.",
            ),
            fix=Words(
                vi="Kiểm tra mqtt.host và mqtt.tls_ca trong tệp cấu hình; nếu đúng, gọi bộ phận "
                "hỗ trợ.",
                en="Check mqtt.host and mqtt.tls_ca in the configuration; if right, call support.",
            ),
            detail=str(exc),
        )
    except (ssl.SSLError, OSError) as exc:
        return CheckResult(
            name="broker_tls", status="fail", seen=refused, fix=renew, detail=str(exc)
        )
    return CheckResult(
        name="broker_tls",
        status="ok",
        seen=Words(
            vi=f"Kết nối mã hoá tới {where} thành công.", en=f"TLS connection to {where} works."
        ),
    )


def check_central_https(cfg: AgentConfig, *, timeout_s: float) -> CheckResult:
    import httpx

    url = cfg.identity.central_url
    if not url:
        return CheckResult(
            name="central_https",
            status="skip",
            seen=Words(
                vi="Chưa biết địa chỉ máy chủ trung tâm (xem mục danh tính).",
                en="Central's address is not known yet (see identity).",
            ),
        )
    try:
        response = httpx.get(url, verify=tls_context(cfg), timeout=timeout_s)
    except (httpx.TransportError, ssl.SSLError, OSError) as exc:
        return CheckResult(
            name="central_https",
            status="fail",
            seen=Words(vi="Không vào được máy chủ trung tâm.", en="Central cannot be reached."),
            fix=Words(
                vi="Kiểm tra mạng và identity.central_url trong tệp cấu hình; nếu mạng tốt, gọi "
                "bộ phận hỗ trợ.",
                en="Check the network and identity.central_url in the configuration; if the "
                "network is fine, call support.",
            ),
            detail=f"{url}: {type(exc).__name__}: {exc}",
        )
    return CheckResult(
        name="central_https",
        status="ok",
        seen=Words(vi="Máy chủ trung tâm trả lời.", en="Central answers."),
        detail=f"{url}: HTTP {response.status_code}",
    )


# -- certificate --------------------------------------------------------------------------
def _day(moment: datetime) -> str:
    return f"{moment:%d/%m/%Y}"


def check_certificate(cfg: AgentConfig, *, now: datetime | None = None) -> CheckResult:
    from cryptography import x509

    m = cfg.mqtt
    if m.tls_cert is None:
        return CheckResult(
            name="certificate",
            status="fail" if m.tls_ca is not None else "skip",
            seen=Words(vi="Kiosk không có chứng chỉ riêng.", en="The kiosk has no certificate."),
            fix=PROVISION_FIX if m.tls_ca is not None else None,
        )
    when = now or datetime.now(UTC)
    try:
        cert = x509.load_pem_x509_certificate(m.tls_cert.read_bytes())
        cas = x509.load_pem_x509_certificates(m.tls_ca.read_bytes()) if m.tls_ca else []
    except (OSError, ValueError) as exc:
        return CheckResult(
            name="certificate",
            status="fail",
            seen=Words(vi="Tệp chứng chỉ bị hỏng.", en="The certificate file is damaged."),
            fix=PROVISION_FIX,
            detail=str(exc),
        )
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    if when < start:
        return CheckResult(
            name="certificate",
            status="fail",
            seen=Words(
                vi=f"Chứng chỉ chỉ có hiệu lực từ ngày {_day(start)}; đồng hồ kiosk có thể sai.",
                en=f"The certificate is valid only from {_day(start)}; the clock may be wrong.",
            ),
            fix=Words(
                vi="Sửa đồng hồ: timedatectl set-ntp true, rồi kiểm tra lại.",
                en="Fix the clock: timedatectl set-ntp true, then check again.",
            ),
        )
    if when >= end:
        return CheckResult(
            name="certificate",
            status="fail",
            seen=Words(
                vi=f"Chứng chỉ đã hết hạn ngày {_day(end)}.",
                en=f"The certificate expired on {_day(end)}.",
            ),
            fix=Words(
                vi="Chạy aps-agent renew để gia hạn chứng chỉ; nếu máy chủ từ chối, xin mã "
                "đăng ký mới ở máy chủ trung tâm và chạy aps-agent provision.",
                en="Run aps-agent renew to renew the certificate; if central refuses, get a "
                "new enrolment token from central and run aps-agent provision.",
            ),
        )
    issued_by_ca = False
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, Exception):  # InvalidSignature and mismatched names
            continue
        issued_by_ca = True
        break
    if not issued_by_ca:
        return CheckResult(
            name="certificate",
            status="fail",
            seen=Words(
                vi="Chứng chỉ của kiosk không do máy chủ trung tâm này cấp.",
                en="The kiosk's certificate was not issued by this fleet's CA.",
            ),
            fix=PROVISION_FIX,
            detail=f"{m.tls_cert} is not directly issued by a CA in {m.tls_ca}",
        )
    days = int((end - when).total_seconds() // 86400)
    seen = Words(
        vi=f"Chứng chỉ còn hạn {days} ngày (đến {_day(end)}).",
        en=f"The certificate has {days} day{'' if days == 1 else 's'} left (until {_day(end)}).",
    )
    if days < CERT_WARN_DAYS:
        return CheckResult(
            name="certificate",
            status="warn",
            seen=seen,
            fix=Words(
                vi="Gia hạn sớm: chạy aps-agent renew (cần kết nối tới máy chủ trung tâm).",
                en="Renew it soon: run aps-agent renew (central must be reachable).",
            ),
        )
    return CheckResult(name="certificate", status="ok", seen=seen)


# -- queue --------------------------------------------------------------------------------
def check_queue(cfg: AgentConfig, *, now: datetime | None = None) -> CheckResult:
    try:
        ob = Outbox.open_readonly(cfg.agent.database, cfg.kiosk.id)
    except OutboxMissing as exc:
        return CheckResult(
            name="queue",
            status="warn",
            seen=Words(
                vi="Chưa có cơ sở dữ liệu: kiosk chưa chạy lần nào.",
                en="No database yet: the agent has never run.",
            ),
            fix=Words(
                vi="Chạy lệnh: systemctl start aps-agent", en="Run: systemctl start aps-agent"
            ),
            detail=str(exc),
        )
    except OutboxError as exc:
        return CheckResult(
            name="queue",
            status="fail",
            seen=Words(
                vi="Cơ sở dữ liệu của kiosk bị hỏng.", en="The kiosk's database is damaged."
            ),
            fix=Words(
                vi="Gọi bộ phận hỗ trợ ngay, không xoá tệp; họ sẽ cứu hồ sơ bằng "
                "aps-agent outbox salvage.",
                en=str(exc),
            ),
            detail=str(exc),
        )
    try:
        s = ob.stats()
    finally:
        ob.close()
    age_s = 0.0
    if s.oldest_queued_created:
        created = datetime.fromisoformat(s.oldest_queued_created)
        age_s = max(0.0, ((now or datetime.now(UTC)) - created).total_seconds())
    seen_vi = f"{s.queued} hồ sơ đang chờ gửi"
    seen_en = f"{s.queued} record(s) waiting to be sent"
    if s.queued:
        seen_vi += f", lâu nhất đã chờ {duration(age_s, 'vi')}"
        seen_en += f", the oldest for {duration(age_s, 'en')}"
    if s.rejected:
        seen_vi += f"; {s.rejected} hồ sơ bị máy chủ trung tâm từ chối"
        seen_en += f"; {s.rejected} refused by central"
    seen = Words(vi=seen_vi + ".", en=seen_en + ".")
    detail = f"queued {s.queued}, acked {s.acked}, rejected {s.rejected}, db {s.db_bytes} B"
    if s.rejected:
        return CheckResult(
            name="queue",
            status="warn",
            seen=seen,
            fix=Words(
                vi="Gửi kết quả lệnh aps-agent outbox status cho bộ phận hỗ trợ.",
                en="Send the output of aps-agent outbox status to support.",
            ),
            detail=detail,
        )
    if s.queued and age_s > QUEUE_STALE_S:
        return CheckResult(
            name="queue",
            status="warn",
            seen=seen,
            fix=Words(
                vi="Kiosk không gửi được: xem mục kết nối ở trên; hồ sơ vẫn an toàn và sẽ được "
                "gửi khi có kết nối.",
                en="The kiosk is not sending: see the connection checks above; the records are "
                "safe and go out once connected.",
            ),
            detail=detail,
        )
    return CheckResult(name="queue", status="ok", seen=seen, detail=detail)


def run_doctor(
    cfg: AgentConfig,
    config_path: Path,
    *,
    policy: Policy,
    timeout_s: float = 10.0,
    usb_backend: object | None = None,
) -> list[CheckResult]:
    """Every doctor check; none waits for a person or writes anything."""
    return [
        check_config_warnings(cfg, config_path),
        check_identity(cfg),
        check_disk(cfg),
        check_permissions(cfg, policy),
        *check_devices(cfg, policy, usb_backend),
        check_broker_tls(cfg, timeout_s=timeout_s),
        check_central_https(cfg, timeout_s=timeout_s),
        check_clock(cfg, timeout_s=timeout_s),
        check_certificate(cfg),
        check_queue(cfg),
    ]
