"""scripts/kiosk-browser.sh with a fake chromium and a tiny health server; the units verify.

The fake browser is a shell script that records its arguments and what it found in its
profile directory, leaves a file there (a citizen's traces), and exits: the script under
test must have waited for the agent's health, pass the kiosk flags, wipe the profile
before every start and start the browser again after each exit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.browser.ui_stack import wait_for

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "kiosk-browser.sh"
SYSTEMD = ROOT / "systemd"
FLAGS = [
    "--kiosk",
    "--no-first-run",
    "--noerrdialogs",
    "--disable-session-crashed-bubble",
    "--disable-pinch",
    "--overscroll-history-navigation=0",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FAKE = """#!/bin/sh
# A fake chromium: one line per run with the arguments, one with the profile's contents.
out="$APS_TEST_RECORD"
profile=""
for a in "$@"; do case $a in --user-data-dir=*) profile=${a#--user-data-dir=};; esac; done
{ printf 'ARGV'; printf ' %s' "$@"; printf '\\n'; } >>"$out"
printf 'PROFILE %s\\n' "$(ls -A "$profile")" >>"$out"
echo "a citizen's cookie" >"$profile/Cookies"
exit 3
"""


class Health:
    """A loopback HTTP server standing in for the agent: 503 until ``ready`` is set."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.hits = 0
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                health.hits += 1
                ok = self.path == "/api/v1/health" and health.ready.is_set()
                body = b'{"online": true}' if ok else b"{}"
                self.send_response(200 if ok else 503)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def health() -> Iterator[Health]:
    h = Health()
    try:
        yield h
    finally:
        h.close()


def env_for(tmp_path: Path, url: str, **extra: str) -> dict[str, str]:
    fake = tmp_path / "fake-chromium"
    fake.write_text(FAKE, encoding="utf-8")
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APS_", "WAYLAND"))}
    env.update(
        APS_UI_URL=url,
        APS_CHROMIUM=str(fake),
        APS_BROWSER_PROFILE=str(tmp_path / "aps-kiosk-browser"),
        APS_TEST_RECORD=str(tmp_path / "record.txt"),
        APS_BACKOFF_MAX_S="1",
        APS_ALLOW_ROOT="1",  # test containers run as root; the box never does
        **extra,
    )
    return env


def run(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_waits_for_health_passes_kiosk_flags_and_restarts_the_browser(
    tmp_path: Path, health: Health
) -> None:
    env = env_for(tmp_path, health.url, APS_MAX_RUNS="3", APS_HEALTH_WAIT_S="60")
    record = tmp_path / "record.txt"
    proc = subprocess.Popen(
        ["bash", str(SCRIPT)], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: health.hits >= 3, "the script to ask for health three times", 30)
        assert not record.exists(), "the browser started before the agent answered"
        health.ready.set()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    log = err.decode()
    assert proc.returncode == 0, log
    assert "waiting up to 60s for the agent" in log
    lines = record.read_text(encoding="utf-8").splitlines()
    argvs = [line.split()[1:] for line in lines if line.startswith("ARGV")]
    profiles = [
        line.removeprefix("PROFILE").strip() for line in lines if line.startswith("PROFILE")
    ]
    assert len(argvs) == 3, log  # exited three times, started three times
    for argv in argvs:
        assert set(FLAGS) <= set(argv), sorted(set(FLAGS) - set(argv))
        assert f"--user-data-dir={tmp_path / 'aps-kiosk-browser'}" in argv
        assert argv[-1] == health.url  # the page, last
        assert not any(a.startswith("--ozone-platform") for a in argv)  # no Wayland here
    assert profiles == ["", "", ""]  # the last run's cookie was wiped before each start
    assert log.count("the browser exited with status 3") == 3
    assert "restarting in 1s" in log


def test_gives_up_with_a_clear_line_when_the_agent_never_answers(
    tmp_path: Path, health: Health
) -> None:
    result = run(env_for(tmp_path, health.url, APS_HEALTH_WAIT_S="2"))
    assert result.returncode == 1
    assert "did not answer" in result.stderr and "aps-agent" in result.stderr
    assert not (tmp_path / "record.txt").exists()


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("APS_UI_URL", "http://192.168.1.5:8765/", "only the agent on this box"),
        ("APS_BROWSER_PROFILE", "/home/someone", "must start with aps-kiosk-browser"),
    ],
)
def test_refuses_unsafe_settings(
    tmp_path: Path, health: Health, setting: str, value: str, message: str
) -> None:
    env = env_for(tmp_path, health.url)
    env[setting] = value
    result = run(env)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "record.txt").exists()


@pytest.mark.parametrize(
    ("now", "days", "want"),
    [
        ("1 06:44", "1-6", "off"),
        ("1 06:45", "1-6", "on"),
        ("6 18:29", "1-6", "on"),
        ("6 18:30", "1-6", "off"),
        ("7 10:00", "1-6", "off"),
        ("7 10:00", "1-5,7", "on"),
        ("3 02:00", "1-7", "off"),
    ],
)
def test_screen_policy_is_on_in_opening_hours_only(
    tmp_path: Path, now: str, days: str, want: str
) -> None:
    env = env_for(tmp_path, "http://127.0.0.1:9/", APS_SCREEN_NOW=now, APS_SCREEN_DAYS=days)
    result = run(env, "screen", "auto", "--dry-run")
    assert (result.returncode, result.stdout.strip()) == (0, want), result.stderr


def test_screen_policy_names_a_bad_setting(tmp_path: Path) -> None:
    env = env_for(tmp_path, "http://127.0.0.1:9/", APS_SCREEN_ON_AT="6:45")
    result = run(env, "screen", "auto", "--dry-run")
    assert result.returncode == 2 and "APS_SCREEN_ON_AT=6:45" in result.stderr


#: Executables a build machine may lack; systemd-analyze's only allowed complaint.
ABSENT_OK = ("/usr/bin/cage",)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_browser_units_verify(tmp_path: Path) -> None:
    units = ["aps-kiosk-browser.service", "aps-screen-policy.service", "aps-screen-policy.timer"]
    for name in units:
        shutil.copy(SYSTEMD / name, tmp_path / name)
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / n) for n in units)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    complaints = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if line.strip() and not any(f"Command {p} is not executable" in line for p in ABSENT_OK)
    ]
    assert complaints == []
