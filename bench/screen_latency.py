"""What the kiosk screen waits for: each API step of a filing, the page's start, the agent's RSS.

A real ``aps-agent run`` process serves the screen (``[ui] listen`` on a free loopback
port), with no devices (no printer: the screen shows the code instead of a slip) and,
unless ``--offline``, a private mosquitto and ``aps-central run`` so the agent is online
and syncs what is filed while it is measured.

API: one HTTP/1.1 keep-alive client (as the page's fetches are) does, per round, the
steps of a filing in order: ``session`` (GET /session), ``search`` (GET /catalogue?q=),
``procedure`` (GET /catalogue/{code}), ``prepare`` (POST /filings/prepare: a fee-bearing
procedure, details typed), ``file`` (POST /filings with a handwritten signature: commits
durably), ``shown`` (POST /filings/{code}/shown), ``rating`` (POST /ratings), ``tracking``
(GET /tracking?code=). Between the steps, interleaved, the baselines: ``static`` (GET of
/static/css/kiosk.css from the same server) and ``bare`` (a bare Starlette JSON endpoint
on uvicorn in its own process). ``--warm`` rounds first, untimed; then ``--rounds``.
Request to response (the whole body read), p50 and p99 per step.

Page: time to interactive of ``/`` in headless Debian chromium (Playwright): from
navigation start (``performance.timeOrigin``) to the first home tile being in the
document, visible and enabled, after its frame is painted (requestAnimationFrame), seen
by an observer the test context adds before the page's scripts. ``--loads`` loads in
one browser context (the box's browser keeps its cache between screens), after one
untimed load.

RSS: the agent's VmRSS (and its peak, VmHWM) from /proc after all of it.

Last line: one JSON object, {"bench", "value" (the worst step p99, ms), "unit",
"baseline" (the static file's p99), "ratio", "steps", "baselines", "page_tti_ms",
"agent_rss_mb", "agent_hwm_mb", "targets_met"}.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from central.mosquitto import MosquittoProcess, free_ports, mqtt_toml

KIOSK = "bench-screen"
AGENCY = "000.00.14.H56"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STEP_P99_TARGET_MS = 100.0
RSS_TARGET_MB = 90.0
PROCEDURE = "2.000815"  # chứng thực bản sao: a fee per page
FORM = {"ten_giay_to": "Bằng tốt nghiệp", "so_trang": 2, "so_ban": 3}
APPLICANT = {
    "full_name": "Nguyễn Thị Ngọc Hường",
    "id_number": "087205001234",
    "date_of_birth": "1954-03-14",
}
SIGNATURE = {
    "type": "handwritten",
    "width": 400,
    "height": 160,
    "strokes": [
        [[20 + 12 * i, 80 + (25 if i % 2 else -25), 40 * i] for i in range(20)],
        [[30, 130, 1200], [260, 128, 1400]],
    ],
}
BARE_APP = """
import sys
import uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def ok(request):
    return JSONResponse({"ok": True})

app = Starlette(routes=[Route("/ok", ok)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""
# Added to the page before its own scripts (through the browser, not the page: the CSP holds).
TTI_OBSERVER = """
(() => {
  const ready = () => {
    const b = document.querySelector("main .tiles button.tile");
    return b && !b.disabled && b.offsetParent !== null;
  };
  const done = () => requestAnimationFrame(() => { window.__apsTti = performance.now(); });
  const watch = () => {
    if (ready()) return done();
    const mo = new MutationObserver(() => { if (ready()) { mo.disconnect(); done(); } });
    mo.observe(document.documentElement, { childList: true, subtree: true, attributes: true });
  };
  if (document.documentElement) watch();
  else document.addEventListener("readystatechange", watch, { once: true });
})();
"""


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(pct(values, 0.50), 2),
        "p99": round(pct(values, 0.99), 2),
        "mean": round(statistics.fmean(values), 2),
        "n": len(values),
    }


def proc_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    raise SystemExit(f"no {key} for pid {pid}")


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode} at start")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not answer {url} within {timeout:.0f}s")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    try:
        return subprocess.Popen(args, stdout=out, stderr=out)
    finally:
        out.close()


def agent_toml(d: Path, ui_port: int, mqtt: str) -> Path:
    path = d / "agent.toml"
    path.write_text(
        f'[kiosk]\nid = "{KIOSK}"\nagency = "{AGENCY}"\nslot = 1\nhotline = "0277 3861 234"\n\n'
        f'[agent]\ndatabase = "{d / "kiosk.db"}"\nreceipts_dir = "{d / "receipts"}"\n'
        'log_level = "WARNING"\n\n'
        f'{mqtt}\n[ui]\nlisten = "127.0.0.1:{ui_port}"\n\n'
        '[payment]\nbank_bin = "970436"\naccount = "BENCH000001"\n'
        'beneficiary = "UBND PHUONG 1 (BENCH)"\n',
        encoding="utf-8",
    )
    return path


class Steps:
    """One filing's API steps over one keep-alive client; each returns what the next needs."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=30)
        self.prepared: dict[str, Any] = {}
        self.code = ""

    def _ok(self, r: httpx.Response) -> Any:
        if r.status_code != 200:
            raise SystemExit(f"{r.request.method} {r.request.url}: {r.status_code} {r.text[:300]}")
        return r.json()

    def session(self) -> None:
        self._ok(self.http.get("/api/v1/session"))

    def search(self) -> None:
        found = self._ok(self.http.get("/api/v1/catalogue", params={"q": "chứng thực bản sao"}))
        if not found["procedures"]:
            raise SystemExit("catalogue search found nothing")

    def procedure(self) -> None:
        self._ok(self.http.get(f"/api/v1/catalogue/{PROCEDURE}"))

    def prepare(self) -> None:
        body = {"procedure": PROCEDURE, "form": FORM, "phone": "0912345678"}
        self.prepared = self._ok(
            self.http.post("/api/v1/filings/prepare", json={**body, "applicant": APPLICANT})
        )

    def file(self) -> None:
        body = {"document_sha256": self.prepared["document_sha256"], "signature": SIGNATURE}
        filed = self._ok(self.http.post("/api/v1/filings", json=body))
        if filed["fee_vnd"] <= 0:
            raise SystemExit(f"{PROCEDURE} was filed without a fee: {filed}")
        self.code = filed["code"]

    def shown(self) -> None:
        self._ok(self.http.post(f"/api/v1/filings/{self.code}/shown"))

    def rating(self) -> None:
        self._ok(
            self.http.post("/api/v1/ratings", json={"level": "hai_long", "dossier_code": self.code})
        )

    def tracking(self) -> None:
        self._ok(self.http.get("/api/v1/tracking", params={"code": self.code}))

    def order(self) -> list[tuple[str, Callable[[], None]]]:
        return [
            ("session", self.session),
            ("search", self.search),
            ("procedure", self.procedure),
            ("prepare", self.prepare),
            ("file", self.file),
            ("shown", self.shown),
            ("rating", self.rating),
            ("tracking", self.tracking),
        ]


def measure_api(
    base: str, bare_url: str, rounds: int, warm: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    steps = Steps(base)
    bare = httpx.Client(timeout=30)
    static = steps.http
    times: dict[str, list[float]] = {name: [] for name, _ in steps.order()}
    base_times: dict[str, list[float]] = {"static": [], "bare": []}

    def baseline(name: str, call: Callable[[], httpx.Response], keep: bool) -> None:
        t0 = time.perf_counter_ns()
        r = call()
        r.read()
        elapsed = (time.perf_counter_ns() - t0) / 1e6
        if r.status_code != 200:
            raise SystemExit(f"baseline {name}: {r.status_code}")
        if keep:
            base_times[name].append(elapsed)

    try:
        for i in range(warm + rounds):
            keep = i >= warm
            for j, (name, step) in enumerate(steps.order()):
                # the baselines between the steps, alternating which goes first
                pair = [
                    ("static", lambda: static.get("/static/css/kiosk.css")),
                    ("bare", lambda: bare.get(bare_url)),
                ]
                for bname, call in pair if (i + j) % 2 else pair[::-1]:
                    baseline(bname, call, keep)
                t0 = time.perf_counter_ns()
                step()
                elapsed = (time.perf_counter_ns() - t0) / 1e6
                if keep:
                    times[name].append(elapsed)
    finally:
        steps.http.close()
        bare.close()
    return times, base_times


def measure_page(url: str, loads: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    out: list[float] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": 1280, "height": 800}, has_touch=True, locale="vi-VN"
            )
            context.add_init_script(TTI_OBSERVER)
            page = context.new_page()
            for i in range(loads + 1):
                page.goto(url, wait_until="commit")
                page.wait_for_function("() => window.__apsTti !== undefined", timeout=30_000)
                if i > 0:  # the first load fills the cache
                    out.append(float(page.evaluate("() => window.__apsTti")))
            context.close()
        finally:
            browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=200, help="timed filings (rounds of steps)")
    ap.add_argument("--warm", type=int, default=20, help="untimed rounds first")
    ap.add_argument("--loads", type=int, default=30, help="timed page loads")
    ap.add_argument("--offline", action="store_true", help="no broker or central")
    ap.add_argument("--dir", default=None, help="directory for databases and logs (default: temp)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        d = Path(tmp)
        procs: list[subprocess.Popen[bytes]] = []
        broker: MosquittoProcess | None = None
        try:
            if args.offline:
                mqtt = f'[mqtt]\nhost = "127.0.0.1"\nport = 9\nusername = "{KIOSK}"\n'
            else:
                broker = MosquittoProcess(d / "broker").start()
                central = d / "central.toml"
                central.write_text(
                    f'[central]\ndatabase = "{d / "central.db"}"\n\n'
                    f"{mqtt_toml(broker.collector('aps-collector-bench'))}\n"
                    '[collector]\nclient_id = "aps-collector-bench"\n',
                    encoding="utf-8",
                )
                procs.append(
                    spawn(
                        [sys.executable, "-m", "central.cli", "run", "--config", str(central)],
                        d / "central.log",
                    )
                )
                mqtt = mqtt_toml(broker.kiosk(KIOSK))
            ui_port, bare_port = free_ports(2)  # two different ports, held together
            cfg = agent_toml(d, ui_port, mqtt)
            agent = spawn(
                [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(cfg)],
                d / "agent.log",
            )
            procs.append(agent)
            bare = spawn([sys.executable, "-c", BARE_APP, str(bare_port)], d / "bare.log")
            procs.append(bare)
            base = f"http://127.0.0.1:{ui_port}"
            bare_url = f"http://127.0.0.1:{bare_port}/ok"
            wait_http(f"{base}/api/v1/health", agent, "aps-agent")
            wait_http(bare_url, bare, "the bare Starlette app")
            times, base_times = measure_api(base, bare_url, args.rounds, args.warm)
            tti = measure_page(base + "/", args.loads)
            if agent.poll() is not None:
                raise SystemExit(f"the agent exited: see {d / 'agent.log'}")
            rss, hwm = proc_mb(agent.pid, "VmRSS"), proc_mb(agent.pid, "VmHWM")
            online = httpx.get(f"{base}/api/v1/health", timeout=10).json()["online"]
        finally:
            for p in procs:
                stop(p)
            if broker is not None:
                broker.stop()
    steps = {k: summary(v) for k, v in times.items()}
    baselines = {k: summary(v) for k, v in base_times.items()}
    worst = max(s["p99"] for s in steps.values())
    print(f"agent {'online' if online else 'offline'}; {args.rounds} rounds after {args.warm}")
    print(f"{'step':<10} {'p50 ms':>8} {'p99 ms':>8}")
    for name, s in {**steps, **{f"[{k}]": v for k, v in baselines.items()}}.items():
        print(f"{name:<10} {s['p50']:>8.2f} {s['p99']:>8.2f}")
    page = summary(tti)
    print(f"page time to interactive: p50 {page['p50']:.1f} ms, p99 {page['p99']:.1f} ms")
    print(f"agent RSS {rss:.1f} MB (peak {hwm:.1f} MB)")
    met = {
        "step_p99_under_100ms": worst < STEP_P99_TARGET_MS,
        "rss_under_90mb": rss < RSS_TARGET_MB,
    }
    result = {
        "bench": "screen_latency",
        "value": worst,
        "unit": "ms (worst step p99)",
        "baseline": baselines["static"]["p99"],
        "ratio": round(worst / baselines["static"]["p99"], 1),
        "steps": steps,
        "baselines": baselines,
        "page_tti_ms": page,
        "agent_rss_mb": round(rss, 1),
        "agent_hwm_mb": round(hwm, 1),
        "online": online,
        "targets_met": met,
    }
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
