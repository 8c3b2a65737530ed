"""``aps-central release`` and ``rollout``: thin commands over the library, errors that say
what to do."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from click.testing import CliRunner

from central.cli import main
from central.fleet.releases import ReleaseStore
from tests import stack
from tests.identity import CENTRAL_KEY


def _config(tmp: Path) -> Path:
    cfg = stack.write_central_config(tmp / "central.toml", tmp / "central.db", 1883)
    with cfg.open("a") as f:
        f.write(f'\n[updates]\nreleases_dir = "{tmp / "releases"}"\n')
    from central.store import SQLiteStore

    SQLiteStore(tmp / "central.db").close()
    return cfg


def _wheels(tmp: Path, version: str, schema: int = 1) -> Path:
    d = tmp / f"wheels-{version}"
    d.mkdir()
    with zipfile.ZipFile(d / f"aps_kiosk-{version}-py3-none-any.whl", "w") as z:
        z.writestr("sync/outbox.py", f"SCHEMA_VERSION = {schema}\n")
    with zipfile.ZipFile(d / "dep-1.0-py3-none-any.whl", "w") as z:
        z.writestr("dep.py", "")
    return d


def test_publish_list_show_and_roll_out(tmp_path: Path) -> None:
    cfg = str(_config(tmp_path))
    run = CliRunner().invoke
    out = run(
        main,
        ["release", "add", "--config", cfg, "--version", "0.2.0", str(_wheels(tmp_path, "0.2.0"))],
    )
    assert out.exit_code == 0, out.output
    assert "outbox schema 1" in out.output and "rolls back to 0.2.0" in out.output
    out = run(
        main,
        [
            "release",
            "add",
            "--config",
            cfg,
            "--version",
            "0.3.0",
            str(_wheels(tmp_path, "0.3.0", schema=2)),
        ],
    )
    assert out.exit_code == 0 and "outbox schema 2, rolls back to 0.2.0" in out.output
    assert run(main, ["release", "list", "--config", cfg]).output.split() == ["0.2.0", "0.3.0"]
    shown = json.loads(run(main, ["release", "show", "--config", cfg, "0.3.0"]).output)
    assert shown["outbox_schema"] == 2 and len(shown["files"]) == 2
    again = run(
        main,
        ["release", "add", "--config", cfg, "--version", "0.2.0", str(tmp_path / "wheels-0.2.0")],
    )
    assert again.exit_code != 0 and "bump the version" in again.output
    missing = run(main, ["rollout", "start", "--config", cfg, "9.9.9", "--canary", "k1"])
    assert missing.exit_code != 0 and "release add" in missing.output
    out = run(main, ["rollout", "start", "--config", cfg, "0.2.0", "--canary", stack.KIOSK])
    assert out.exit_code == 0, out.output
    status = json.loads(run(main, ["rollout", "status", "--config", cfg]).output)
    assert status[0]["state"] == "running" and status[0]["current"]["pending"] == [stack.KIOSK]
    assert "paused" in run(main, ["rollout", "pause", "--config", cfg]).output
    assert "aborted" in run(main, ["rollout", "abort", "--config", cfg]).output
    rel = ReleaseStore(tmp_path / "releases").get("0.2.0", CENTRAL_KEY.public_key())
    assert rel.manifest.kid  # signed with central's configured key
