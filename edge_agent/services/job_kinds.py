"""The job kinds every agent runs (``edge_agent.services.jobs`` runs them; docs/jobs.md).

Each handler takes the job's args and a ``report(step, detail)`` callable and
returns a result dict (JSON scalars, bounded by the runner) or raises; the
message of what it raises is the job's error at central.

- ``print-test-slip``: the self-test slip through the agent's own printer
  (under the filing's print lock: never in the middle of a citizen's slip);
- ``resync-catalogue``: forget the cached catalogue item and ask central for
  everything again from cursor 0 (items already held are no-ops);
- ``selftest``: the self-test's in-process checks that need no device closed and
  no person (identity, disk, queue), and the devices' health as supervised; it
  succeeds when the checks ran, with ``ok``, ``failed`` and ``warned`` in its result;
- ``collect-diagnostics``: a gzip tarball (at most :data:`MAX_DIAGNOSTICS_BYTES`)
  of the configuration without secrets, health, queue, the remote configuration,
  recent jobs, the checks and the last log lines, uploaded as ``chunk`` records;
- ``restart-agent``: reports success, then asks the process to exit; systemd
  (``Restart=always``) starts it again;
- ``purge-synced``: synced records older than ``older_than_days`` (default: the
  configured retention) are purged now.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import json
import logging
import tarfile
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from edge_agent.doctor import check_queue
from edge_agent.host_checks import check_disk, check_identity
from edge_agent.selftest import selftest_slip
from edge_agent.services.jobs import Report, ThenDo
from sync.attachments import add_chunks
from sync.ids import new_ulid

if TYPE_CHECKING:
    from edge_agent.app import KioskApp

MAX_DIAGNOSTICS_BYTES = 2 * 1024 * 1024
LOG_LINES = 500
SECRET_WORDS = ("password", "secret", "token", "passphrase", "private")


class RecentLogs(logging.Handler):
    """The last :data:`LOG_LINES` lines the agent logged (for ``collect-diagnostics``)."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: collections.deque[str] = collections.deque(maxlen=LOG_LINES)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record)[:2000])
        except Exception:  # logging must never raise
            self.handleError(record)


def without_secrets(value: Any) -> Any:
    """``value`` with every field whose name says it is a secret replaced by a marker."""
    if isinstance(value, dict):
        return {
            k: "<removed>" if any(w in str(k).lower() for w in SECRET_WORDS) else without_secrets(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [without_secrets(v) for v in value]
    return value


def register_builtin(app: KioskApp, recent: RecentLogs) -> None:
    """Register the built-in kinds on ``app.jobs``."""
    jobs = app.jobs

    def print_test_slip(args: dict[str, str], report: Report) -> dict[str, Any]:
        printer = app.devices.printer
        if printer is None:
            raise RuntimeError("no printer is configured on this kiosk (devices.printer)")
        report("printing", None)
        with app.filing._print_lock:
            status = printer.print_receipt(selftest_slip(app.cfg, datetime.now(UTC)))
        return {"printer_state": status.state.value}

    def resync_catalogue(args: dict[str, str], report: Report) -> dict[str, Any]:
        with app.outbox.local_write() as conn:
            conn.execute("DELETE FROM downlink_items WHERE kind = 'catalogue'")
            conn.execute("UPDATE downlink_state SET value = '0' WHERE name = 'cursor'")
        app.sync.resync_state()
        return {"asked_from_cursor": 0}

    def checks() -> list[dict[str, Any]]:
        found = [check_identity(app.cfg), check_disk(app.cfg), check_queue(app.cfg)]
        return [c.to_json_dict("en") for c in found]

    def selftest(args: dict[str, str], report: Report) -> dict[str, Any]:
        results = checks()
        devices = app.device_health()
        for name, health in devices.items():
            ok = health.get("state") in ("ok", "ready", "idle", "connected")
            results.append({"name": name, "status": "ok" if ok else "warn", **health})
        failed = [r["name"] for r in results if r["status"] == "fail"]
        report("checked", f"{len(results)} checks")
        # The job succeeds when the checks ran; what they found is its result.
        return {
            "ok": not failed,
            "checks": len(results),
            "failed": ",".join(failed) or None,
            "warned": ",".join(r["name"] for r in results if r["status"] == "warn") or None,
            "report": json.dumps(results, ensure_ascii=False)[:2000],
        }

    def collect_diagnostics(args: dict[str, str], report: Report) -> dict[str, Any]:
        with app.outbox.reading() as conn:
            recent_jobs = conn.execute(
                "SELECT id, kind, state, outcome, received_at, finished_at FROM remote_jobs"
                " ORDER BY received_at DESC LIMIT 50"
            ).fetchall()
        files: dict[str, bytes] = {
            "config.json": _json(without_secrets(app.cfg.model_dump(mode="json"))),
            "health.json": _json(app.health()),
            "heartbeat.json": _json(app._heartbeat_fields()),
            "queue.json": _json(dataclasses.asdict(app.outbox.stats())),
            "remote-config.json": _json(app.remote_config.settings()),
            "jobs.json": _json([list(r) for r in recent_jobs]),
            "checks.json": _json(checks()),
            "agent.log": "\n".join(recent.lines).encode(),
        }
        data = _tarball(files)
        while len(data) > MAX_DIAGNOSTICS_BYTES and files["agent.log"]:
            files["agent.log"] = files["agent.log"][len(files["agent.log"]) // 2 :]
            data = _tarball(files)
        if len(data) > MAX_DIAGNOSTICS_BYTES:
            raise RuntimeError(
                f"diagnostics are {len(data)} bytes, over {MAX_DIAGNOSTICS_BYTES} even without logs"
            )
        report("uploading", f"{len(data)} bytes")
        meta = {"att": new_ulid()}
        with app.outbox.transaction() as tx:
            chunks = add_chunks(tx, meta, data)
        return {"attachment": meta["att"], "bytes": len(data), "chunks": chunks}

    def restart_agent(args: dict[str, str], report: Report) -> ThenDo:
        return ThenDo({"restarting": True}, app.request_restart)

    def purge_synced(args: dict[str, str], report: Report) -> dict[str, Any]:
        days_text = args.get("older_than_days")
        days = app.cfg.sync.retention_days if days_text is None else float(days_text)
        if not 0 <= days <= 3650:
            raise ValueError(f"older_than_days {days_text!r}: must be 0 to 3650")
        purged = app.outbox.purge(retention_s=days * 86400, now=time.time())
        return {"purged": purged, "older_than_days": str(days)}

    jobs.register("print-test-slip", print_test_slip)
    jobs.register("resync-catalogue", resync_catalogue)
    jobs.register("selftest", selftest)
    jobs.register("collect-diagnostics", collect_diagnostics)
    jobs.register("restart-agent", restart_agent)
    jobs.register("purge-synced", purge_synced)


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str).encode()


def _tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"diagnostics/{name}")
            info.size = len(data)
            info.mtime = int(time.time())
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()
