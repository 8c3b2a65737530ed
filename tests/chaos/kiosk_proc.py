"""One chaos kiosk: the real kiosk application and a scripted citizen, in one process.

``python -m tests.chaos.kiosk_proc --config agent.toml --dir DIR --seed S`` runs
:class:`edge_agent.app.KioskApp` (what ``aps-agent run`` runs: outbox, sync client,
services) over an emulated document camera (firmware_mocks), and a citizen who keeps
filing through the same services the demo drives: dossiers with photographed pages,
ratings, help requests. The harness kills it with SIGKILL and starts it again.

Fault hook: while ``DIR/disk-full`` exists the outbox's disk reserve
(``min_free_disk_bytes``) is set above any disk, so every filing must be refused
cleanly (a CitizenError, nothing committed) while acks still land.

While ``DIR/stop-filing`` exists the citizen files nothing (the drain at the end).

Each outcome is appended to ``DIR/actions.jsonl`` after the service returned: a
filing the citizen was given a code for is listed there (a kill between the commit
and the line loses only the line, never the record).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import threading
from datetime import date
from pathlib import Path
from types import FrameType
from typing import Any

from drivers.document_camera import DocumentCamera
from drivers.identity import Identity
from edge_agent import CitizenError
from edge_agent.app import KioskApp
from edge_agent.config import load_agent_config
from edge_agent.signature import HandwrittenSignature
from firmware_mocks.v4l2_camera import EmulatedV4l2Camera
from sync.logs import setup_logging

CAMERA_URL = "v4l2:///dev/video0?width=480&height=360&format=YUYV&warmup=1"
FULL_RESERVE = 2**62  # more than any disk: every filing is refused while it is set
NAMES = ("Nguyễn Thị Ngọc Hường", "Đặng Quốc Việt", "Trần Văn Ổn", "Lê Thị Mỹ Duyên")
LEVELS = ("rat_hai_long", "hai_long", "khong_hai_long")


def citizen(rng: random.Random) -> Identity:
    return Identity(
        id_number=f"0872050{rng.randrange(100_000):05d}",
        old_id_number=None,
        full_name=rng.choice(NAMES),
        date_of_birth=date(1985, 3, 14),
        sex="F",
        address="Phường 1, TP. Sa Đéc, Đồng Tháp",
        issue_date=date(2021, 8, 15),
        expiry_date=None,
        document_number=None,
        nationality=None,
        source="qr",
    )


SIGNATURE = [
    [[10, 60, 0], [40, 20, 30], [70, 70, 60], [100, 25, 90]],
    [[120, 50, 400], [180, 52, 450]],
]


class Citizen:
    """Files, rates and asks for help at random, forever (until ``stop``)."""

    def __init__(
        self,
        app: KioskApp,
        cam: EmulatedV4l2Camera,
        out: Path,
        seed: int,
        pace: tuple[float, float] = (0.15, 0.5),
    ) -> None:
        self.app, self.cam, self.out = app, cam, out
        self.pace = pace
        self.rng = random.Random(seed)
        self.flag = out / "disk-full"
        self.done = out / "stop-filing"
        self.normal_reserve = app.outbox.min_free_disk_bytes
        self.stop = threading.Event()
        self.log = (out / "actions.jsonl").open("a", encoding="utf-8")

    def note(self, **entry: Any) -> None:
        self.log.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self.log.flush()

    def run(self) -> None:
        while not self.stop.wait(self.rng.uniform(*self.pace)):
            if self.done.exists():
                continue  # the run is over: keep syncing, file nothing more
            full = self.flag.exists()
            self.app.outbox.min_free_disk_bytes = FULL_RESERVE if full else self.normal_reserve
            action = self.rng.choices(("dossier", "rating", "help"), (6, 3, 1))[0]
            try:
                self.note(action=action, full=full, **self.act(action))
            except CitizenError as exc:
                self.note(action=action, full=full, refused=str(exc), message_vi=exc.message_vi)
                self.app.capture.clear()

    def act(self, action: str) -> dict[str, Any]:
        if action == "rating":
            r = self.app.ratings.rate(self.rng.choice(LEVELS))
            return {"result": r.to_json_dict()}
        if action == "help":
            t = self.app.support.request_help(message="Tôi cần hỗ trợ khai hồ sơ")
            return {"result": t.to_json_dict()}
        self.app.identify(citizen(self.rng))
        pages = []
        for _ in range(self.rng.choice((0, 1, 1, 2))):
            self.cam.next_page()
            page = self.app.capture.capture()
            self.app.capture.accept(page.id)
            pages.append(page.id)
        prepared = self.app.filing.prepare(
            "2.000815",
            {"ten_giay_to": "Bằng tốt nghiệp", "so_trang": 2, "so_ban": 1},
            phone="0912345678",
        )
        sig = HandwrittenSignature.from_strokes(SIGNATURE, width=300, height=100)
        result = self.app.filing.file(
            prepared, signature=sig, attachments=self.app.capture.attachments()
        )
        self.app.capture.clear()
        self.app.session.clear("filed")
        return {"code": result.code, "record_id": result.filed.record_id, "pages": len(pages)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pace", type=float, nargs=2, default=(0.15, 0.5))
    args = parser.parse_args()
    cfg = load_agent_config(args.config, {"devices.document_camera": CAMERA_URL})
    setup_logging("INFO")
    cam = EmulatedV4l2Camera(width=480, height=360, pixel_format="YUYV")
    app = KioskApp(cfg, camera=DocumentCamera(CAMERA_URL, source=cam, reopen_s=0))
    citizen_ = Citizen(app, cam, args.dir, args.seed, pace=(args.pace[0], args.pace[1]))

    def on_signal(signum: int, frame: FrameType | None) -> None:
        citizen_.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    app.start()
    try:
        citizen_.run()
    finally:
        app.stop()


if __name__ == "__main__":
    main()
