"""Checks of the box itself, shared by ``selftest`` and ``doctor``: disk, files, identity, clock.

Theory of operation
-------------------
Nothing here waits for a person, writes a file or holds a device, so every check
is safe while the agent runs.

- **disk**: free space of the file system holding ``[agent] database`` (its
  nearest existing parent when the database is not made yet) against
  ``[sync] min_free_disk_mb``, below which the agent refuses new filings.
- **permissions**: private key files (``[mqtt] tls_key``, ``[identity]
  signing_key``) mode 0600 or stricter; the database's directory owned by the
  service user with no access for others; the configuration file owned by
  ``root`` (:attr:`Policy.config_owner`), group the service's group, unreadable
  by others (it may hold the broker password).
- **identity**: what ``aps-agent provision`` writes: office, central's address,
  the kiosk's signing key (loads, 0600: :func:`sync.identity_files.load_private_key`)
  and central's public keys (:func:`sync.identity_files.load_public_keys`).
  Missing means the kiosk was never provisioned: the fix says so.
- **clock**: a Raspberry Pi has no real-time clock; after a power cut without
  network it may think it is 1970 or last week. The offset is the HTTP ``Date``
  of ``[identity] central_url`` minus the middle of the request on this clock
  (``Date`` has whole seconds, so the figure is good to about one second);
  beyond :data:`CLOCK_MAX_OFFSET_S` the check fails. :func:`clock_from_offset`
  turns an offset measured another way (the selftest's broker round trip
  carries central's time) into the same result.
"""

from __future__ import annotations

import grp
import pwd
import shutil
import ssl
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

from edge_agent.check_report import CheckResult, Words, duration, size
from edge_agent.config import AgentConfig
from sync.identity_files import KeyFileError, load_private_key, load_public_keys

__all__ = [
    "CLOCK_MAX_OFFSET_S",
    "Policy",
    "check_clock",
    "check_disk",
    "check_identity",
    "check_permissions",
    "clock_from_offset",
    "http_date_offset",
]

#: Largest clock offset against central that passes, seconds. Dossier times,
#: due dates and signed envelopes all carry this box's time.
CLOCK_MAX_OFFSET_S = 30.0
PROVISION_FIX = Words(
    vi="Chạy lệnh: aps-agent provision --central ĐỊA_CHỈ --token MÃ (mã lấy từ máy chủ "
    "trung tâm), rồi chạy lại kiểm tra.",
    en="Run aps-agent provision --central URL --token TOKEN (the token comes from central), "
    "then run this check again.",
)


@dataclass(frozen=True, kw_only=True)
class Policy:
    """Who should own what on an installed kiosk (the install script makes it so)."""

    service_user: str = "aps"
    config_owner: str = "root"
    config_path: Path | None = None


def _existing_parent(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_disk(cfg: AgentConfig) -> CheckResult:
    where = _existing_parent(cfg.agent.database.parent)
    need = cfg.sync.min_free_disk_mb * 1024 * 1024
    try:
        free = shutil.disk_usage(where).free
    except OSError as exc:
        return CheckResult(
            name="disk",
            status="fail",
            seen=Words(vi="Không đọc được dung lượng ổ đĩa.", en="Could not read the free space."),
            fix=Words(vi="Kiểm tra thẻ nhớ hoặc ổ đĩa.", en="Check the SD card or disk."),
            detail=f"disk_usage({where}): {exc}",
        )
    vi_free, en_free = size(free, "vi"), size(free, "en")
    vi_need, en_need = size(need, "vi"), size(need, "en")
    if free < need:
        return CheckResult(
            name="disk",
            status="fail",
            seen=Words(
                vi=f"Chỉ còn trống {vi_free}, cần ít nhất {vi_need}; kiosk sẽ từ chối nhận hồ sơ.",
                en=f"Only {en_free} free, at least {en_need} needed; the kiosk refuses filings.",
            ),
            fix=Words(
                vi="Giải phóng dung lượng (xoá tệp nhật ký cũ: journalctl --vacuum-size=100M) "
                "hoặc thay thẻ nhớ lớn hơn.",
                en="Free some space (old logs: journalctl --vacuum-size=100M) or use a larger "
                "SD card.",
            ),
            detail=f"{where}: {free} bytes free, min_free_disk_mb = {cfg.sync.min_free_disk_mb}",
        )
    return CheckResult(
        name="disk",
        status="ok",
        seen=Words(
            vi=f"Còn trống {vi_free} (tối thiểu {vi_need}).",
            en=f"{en_free} free (minimum {en_need}).",
        ),
        detail=f"{where}: {free} bytes free",
    )


def _user(name: str) -> tuple[int, int] | None:
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid


def _key_problem(label: str, path: Path | None) -> tuple[Words, Words, str] | None:
    if path is None:
        return None
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        return (
            Words(vi=f"Không đọc được tệp khoá {label}.", en=f"Cannot read the {label} key file."),
            Words(vi=f"Kiểm tra tệp {path}.", en=f"Check the file {path}."),
            f"{path}: {exc}",
        )
    if mode & 0o077:
        return (
            Words(
                vi=f"Tệp khoá {label} để người khác đọc được.",
                en=f"The {label} key file can be read by others.",
            ),
            Words(vi=f"Chạy lệnh: chmod 600 {path}", en=f"Run: chmod 600 {path}"),
            f"{path} has mode {mode:04o}, expected 0600",
        )
    return None


def check_permissions(cfg: AgentConfig, policy: Policy) -> CheckResult:
    """Key files 0600, the database's directory the service's own, the config root:aps 0640."""
    problems: list[tuple[Words, Words, str]] = []
    for label, path in (("MQTT", cfg.mqtt.tls_key), ("ký", cfg.identity.signing_key)):
        found = _key_problem(label, path)
        if found is not None:
            problems.append(found)
    service = _user(policy.service_user)
    if service is None:
        problems.append(
            (
                Words(
                    vi=f"Chưa có tài khoản dịch vụ {policy.service_user}.",
                    en=f"The service account {policy.service_user} does not exist.",
                ),
                Words(
                    vi="Chạy lại bộ cài đặt kiosk (nó tạo tài khoản và thư mục).",
                    en="Run the kiosk installer again (it makes the account and directories).",
                ),
                f"no user {policy.service_user!r}",
            )
        )
    else:
        uid, gid = service
        db_dir = cfg.agent.database.parent
        try:
            st = db_dir.stat()
        except OSError as exc:
            problems.append(
                (
                    Words(vi="Chưa có thư mục dữ liệu.", en="The data directory is missing."),
                    Words(
                        vi="Chạy lại bộ cài đặt kiosk, hoặc: systemctl start aps-agent.",
                        en="Run the kiosk installer again, or: systemctl start aps-agent.",
                    ),
                    f"{db_dir}: {exc}",
                )
            )
        else:
            if st.st_uid != uid or stat.S_IMODE(st.st_mode) & 0o007:
                problems.append(
                    (
                        Words(
                            vi="Thư mục dữ liệu không thuộc riêng tài khoản dịch vụ.",
                            en="The data directory is not the service account's own.",
                        ),
                        Words(
                            vi=f"Chạy lệnh: chown {policy.service_user} {db_dir}; "
                            f"chmod 700 {db_dir}",
                            en=f"Run: chown {policy.service_user} {db_dir}; chmod 700 {db_dir}",
                        ),
                        f"{db_dir}: owner uid {st.st_uid} (want {uid}), "
                        f"mode {stat.S_IMODE(st.st_mode):04o}",
                    )
                )
        config = policy.config_path
        owner = _user(policy.config_owner)
        if config is not None and owner is not None:
            try:
                cst = config.stat()
            except OSError as exc:
                problems.append(
                    (
                        Words(vi="Không đọc được tệp cấu hình.", en="Cannot read the config."),
                        Words(vi=f"Kiểm tra tệp {config}.", en=f"Check the file {config}."),
                        f"{config}: {exc}",
                    )
                )
            else:
                mode = stat.S_IMODE(cst.st_mode)
                if cst.st_uid != owner[0] or cst.st_gid != gid or mode & 0o027:
                    group = grp.getgrgid(gid).gr_name
                    problems.append(
                        (
                            Words(
                                vi="Tệp cấu hình có thể bị người khác đọc hoặc sửa.",
                                en="Others may read or change the configuration file.",
                            ),
                            Words(
                                vi=f"Chạy lệnh: chown {policy.config_owner}:{group} {config}; "
                                f"chmod 640 {config}",
                                en=f"Run: chown {policy.config_owner}:{group} {config}; "
                                f"chmod 640 {config}",
                            ),
                            f"{config}: uid {cst.st_uid} gid {cst.st_gid} mode {mode:04o}, "
                            f"want {policy.config_owner}:{group} 0640",
                        )
                    )
    if not problems:
        return CheckResult(
            name="permissions",
            status="ok",
            seen=Words(
                vi="Tệp khoá, thư mục dữ liệu và tệp cấu hình đều đúng quyền.",
                en="Key files, the data directory and the configuration have the right modes.",
            ),
        )
    return CheckResult(
        name="permissions",
        status="fail",
        seen=Words(vi=" ".join(p[0].vi for p in problems), en=" ".join(p[0].en for p in problems)),
        fix=Words(vi=" ".join(p[1].vi for p in problems), en=" ".join(p[1].en for p in problems)),
        detail="; ".join(p[2] for p in problems),
    )


def check_identity(cfg: AgentConfig) -> CheckResult:
    ident = cfg.identity
    signing_key, central_keys = ident.signing_key, ident.central_keys
    missing = [
        key
        for key, value in (
            ("office", ident.office),
            ("central_url", ident.central_url),
            ("signing_key", ident.signing_key),
            ("central_keys", ident.central_keys),
        )
        if not value
    ]
    if missing or signing_key is None or central_keys is None:
        return CheckResult(
            name="identity",
            status="fail",
            seen=Words(
                vi="Kiosk chưa được đăng ký với máy chủ trung tâm.",
                en="This kiosk has not been provisioned with central.",
            ),
            fix=PROVISION_FIX,
            detail="[identity] missing: " + ", ".join(missing),
        )
    try:
        load_private_key(signing_key)
        keys = load_public_keys(central_keys)
    except KeyFileError as exc:
        text = str(exc)
        if "chmod 600" in text:
            fix = Words(
                vi=f"Chạy lệnh: chmod 600 {ident.signing_key}",
                en=f"Run: chmod 600 {ident.signing_key}",
            )
        else:
            fix = PROVISION_FIX
        return CheckResult(
            name="identity",
            status="fail",
            seen=Words(
                vi="Tệp khoá của kiosk bị thiếu, hỏng hoặc để người khác đọc được.",
                en="The kiosk's key files are missing, damaged or readable by others.",
            ),
            fix=fix,
            detail=text,
        )
    n = len(keys)
    return CheckResult(
        name="identity",
        status="ok",
        seen=Words(
            vi=f"Đã đăng ký tại đơn vị {ident.office}; khoá ký và {n} khoá của máy chủ đều đọc "
            "được.",
            en=f"Provisioned in office {ident.office}; the signing key and {n} central key(s) "
            "load.",
        ),
    )


def tls_context(cfg: AgentConfig) -> ssl.SSLContext:
    """For central's HTTPS: the system's CAs, plus the fleet CA of ``[mqtt] tls_ca``."""
    context = ssl.create_default_context()
    if cfg.mqtt.tls_ca is not None:
        context.load_verify_locations(cafile=str(cfg.mqtt.tls_ca))
    return context


def http_date_offset(
    url: str,
    *,
    verify: ssl.SSLContext,
    timeout_s: float,
    wall: Callable[[], float] = time.time,
) -> float:
    """Central's clock minus this box's, seconds, from the ``Date`` of one HTTP request.

    Raises ``OSError`` (``httpx`` transport errors are turned into it) or ``ValueError``
    (no usable ``Date`` header).
    """
    import httpx

    before = wall()
    try:
        response = httpx.get(url, verify=verify, timeout=timeout_s, follow_redirects=False)
    except httpx.TransportError as exc:
        raise OSError(f"{url}: {type(exc).__name__}: {exc}") from None
    after = wall()
    header = response.headers.get("date")
    if not header:
        raise ValueError(f"{url} answered HTTP {response.status_code} without a Date header")
    try:
        theirs = parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError):
        raise ValueError(f"{url}: Date header {header[:60]!r} is not an HTTP date") from None
    return theirs - (before + after) / 2


def clock_from_offset(offset_s: float, source: str) -> CheckResult:
    """The clock verdict for ``offset_s`` = central's time minus this box's."""
    vi_off, en_off = duration(offset_s, "vi"), duration(offset_s, "en")
    if abs(offset_s) <= CLOCK_MAX_OFFSET_S:
        return CheckResult(
            name="clock",
            status="ok",
            seen=Words(
                vi=f"Đồng hồ lệch {vi_off} so với máy chủ trung tâm.",
                en=f"The clock is {en_off} off central's.",
            ),
            detail=f"offset {offset_s:+.1f} s ({source})",
        )
    vi_way = "chậm" if offset_s > 0 else "nhanh"
    en_way = "behind" if offset_s > 0 else "ahead of"
    limit_vi, limit_en = duration(CLOCK_MAX_OFFSET_S, "vi"), duration(CLOCK_MAX_OFFSET_S, "en")
    return CheckResult(
        name="clock",
        status="fail",
        seen=Words(
            vi=f"Đồng hồ {vi_way} {vi_off} so với máy chủ trung tâm (cho phép {limit_vi}).",
            en=f"The clock is {en_off} {en_way} central's (at most {limit_en} allowed).",
        ),
        fix=Words(
            vi="Bật đồng bộ giờ: timedatectl set-ntp true, chờ một phút rồi kiểm tra lại "
            "(timedatectl phải báo 'System clock synchronized: yes').",
            en="Turn on time sync: timedatectl set-ntp true, wait a minute and check again "
            "(timedatectl must say 'System clock synchronized: yes').",
        ),
        detail=f"offset {offset_s:+.1f} s ({source})",
    )


def check_clock(cfg: AgentConfig, *, timeout_s: float) -> CheckResult:
    url = cfg.identity.central_url
    if not url:
        return CheckResult(
            name="clock",
            status="fail",
            seen=Words(
                vi="Không biết địa chỉ máy chủ trung tâm để so giờ.",
                en="Central's address is not known, so the clock cannot be compared.",
            ),
            fix=PROVISION_FIX,
            detail="[identity] central_url is empty",
        )
    try:
        offset = http_date_offset(url, verify=tls_context(cfg), timeout_s=timeout_s)
    except (OSError, ValueError, ssl.SSLError) as exc:
        return CheckResult(
            name="clock",
            status="fail",
            seen=Words(
                vi="Không hỏi được giờ của máy chủ trung tâm.",
                en="Could not ask central for the time.",
            ),
            fix=Words(
                vi="Kiểm tra mạng (cáp, Wi-Fi) và địa chỉ máy chủ trong tệp cấu hình; nếu mạng "
                "tốt, gọi bộ phận hỗ trợ.",
                en="Check the network (cable, Wi-Fi) and central's address in the configuration; "
                "if the network is fine, call support.",
            ),
            detail=str(exc),
        )
    return clock_from_offset(offset, f"HTTP Date of {url}")
