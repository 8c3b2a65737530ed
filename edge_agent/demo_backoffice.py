"""The demo's one-stop office: the staff and back-office side, over central's HTTP API.

``aps-demo`` plays the office's back-office system and its staff with plain
HTTP calls to ``aps-central run``'s API (docs/api.md), exactly as a real
back-office integration would: a bearer token from ``aps-central api-token
add``; the duty roster; status changes; a bank's payment notice signed with
the shared secret (HMAC-SHA256 of the body in ``X-APS-Signature``); an answer
to a citizen's question; a FAQ item and a new catalogue version. A webhook
receiver on loopback stands in for the on-duty staff member's phone.

Only the demo (and tests) may use both sides; nothing here is imported by a kiosk.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

PAYMENT_SECRET = "demo-payment-secret-0001"  # shared with the "bank" below; demo only
WEBHOOK_SECRET = "demo-webhook-secret-0001"
STAFF_ID = "nv-mai"


class WebhookInbox:
    """A loopback HTTP receiver: the on-duty staff member's notifications."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                good = hmac.compare_digest(
                    self.headers.get("X-APS-Signature", ""),
                    "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), raw, hashlib.sha256).hexdigest(),
                )
                if good:
                    inbox.received.append(json.loads(raw))
                self.send_response(200 if good else 401)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def central_toml_extra(api_port: int, webhook_url: str) -> str:
    """The demo central's [api] and [notify] sections."""
    return (
        f'\n[api]\nlisten = "127.0.0.1:{api_port}"\npayment_secret = "{PAYMENT_SECRET}"\n'
        f'\n[notify]\nwebhook_url = "{webhook_url}"\nwebhook_secret = "{WEBHOOK_SECRET}"\n'
        "webhook_allow_http = true\n"
    )


def new_token(central_toml: Path) -> str:
    """``aps-central api-token add``: the token is printed once, only its hash is stored."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "central.cli",
            "api-token",
            "add",
            "demo-backoffice",
            "--config",
            str(central_toml),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip().splitlines()[-1].strip()


class BackOffice:
    """The office's back-office system and staff, as HTTP calls to central."""

    def __init__(self, api_port: int, token: str) -> None:
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{api_port}/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.http.request(method, path, **kwargs)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} {path}: HTTP {r.status_code}: {r.text[:300]}")
        return r.json()

    def put_on_duty(self, office: str, days: list[str]) -> None:
        self._call(
            "PUT",
            f"/roster/staff/{STAFF_ID}",
            json={"name": "Trần Thị Mai", "phone": "0918 123 456", "channels": ["desk", "hotline"]},
        )
        for day in days:  # the office's wall-clock dates (docs/support.md)
            shift = {"staff": STAFF_ID, "office": office, "start": "00:00", "end": "23:59"}
            self._call("POST", "/roster/shifts", json={**shift, "day": day})

    def advance(self, code: str, notes: dict[str, str]) -> list[str]:
        """Move a dossier through received, processing, result-ready."""
        done = []
        for state in ("received", "processing", "result-ready"):
            self._call(
                "POST", f"/dossiers/{code}/status", json={"state": state, "note": notes.get(state)}
            )
            done.append(state)
        return done

    def bank_pays(self, code: str, amount_vnd: int, paid_at: datetime) -> dict[str, Any]:
        """The bank's payment notice, signed with the shared secret."""
        raw = json.dumps(
            {
                "reference": f"NAPAS-DEMO-{code}",
                "dossier_code": code,
                "amount_vnd": amount_vnd,
                "paid_at": paid_at.isoformat(timespec="seconds"),
            }
        ).encode()
        sig = "sha256=" + hmac.new(PAYMENT_SECRET.encode(), raw, hashlib.sha256).hexdigest()
        r = self.http.post(
            "/payments/callback",
            content=raw,
            headers={"X-APS-Signature": sig, "Content-Type": "application/json"},
        )
        if r.status_code >= 400:
            raise RuntimeError(f"payment callback: HTTP {r.status_code}: {r.text[:300]}")
        return dict(r.json())

    def answer(self, lookup_code: str, text: str) -> None:
        self._call(
            "POST",
            f"/inquiries/{lookup_code}/answer",
            json={"answer": text, "answered_by": "Tổ hỗ trợ dịch vụ công"},
        )

    def publish_faq(self) -> None:
        self._call(
            "POST",
            "/faq",
            json={
                "items": [
                    {
                        "id": "faq-khai-sinh-mat",
                        "question": "Giấy khai sinh bị mất thì làm sao?",
                        "answer": "Ông/Bà làm thủ tục cấp bản sao trích lục khai sinh tại UBND "
                        "phường nơi đã đăng ký khai sinh.",
                        "tags": ["khai sinh", "trích lục"],
                    }
                ]
            },
        )

    def publish_catalogue(self, doc: dict[str, Any]) -> str:
        return str(self._call("POST", "/catalogue", json=doc).get("version", doc["version"]))
