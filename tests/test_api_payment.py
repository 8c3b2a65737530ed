"""The fee's VietQR code on screen: the filing result's ``payment`` and its SVG."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from drivers.receipt import qr_matrix
from drivers.vietqr import parse_payload
from edge_agent.api import ApiServer
from edge_agent.app import KioskApp
from tests.kiosk import REAL_ACCOUNT, app_config, card, strokes

V1 = "/api/v1"
COPY = ("2.000815", {"ten_giay_to": "Bằng tốt nghiệp", "so_trang": 2, "so_ban": 3})
BIRTH = (
    "1.001193",
    {
        "ho_ten_tre": "Trần Gia Bảo",
        "ngay_sinh_tre": "2026-11-20",
        "gioi_tinh_tre": "Nam",
        "noi_sinh": "Bệnh viện Sa Đéc",
        "quan_he": "Cha",
    },
)


def served(tmp_path: Path, payment: dict[str, Any] | None = None) -> tuple[KioskApp, ApiServer]:
    app = KioskApp(app_config(tmp_path, payment=payment))
    app.identify(card())
    srv = ApiServer(app, "127.0.0.1:0")
    srv.start()
    return app, srv


@pytest.fixture
def http(tmp_path: Path) -> Iterator[httpx.Client]:
    app, srv = served(tmp_path)
    with httpx.Client(base_url=srv.url, timeout=20.0) as client:
        yield client
    srv.stop()
    app.stop()


def file(http: httpx.Client, procedure: str, form: dict[str, Any]) -> dict[str, Any]:
    prepared = http.post(f"{V1}/filings/prepare", json={"procedure": procedure, "form": form})
    assert prepared.status_code == 200, prepared.text
    sig = {"type": "handwritten", "width": 400, "height": 200, "strokes": strokes()}
    r = http.post(
        f"{V1}/filings",
        json={"document_sha256": prepared.json()["document_sha256"], "signature": sig},
    )
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def dark_modules(svg: str, border: int = 4) -> set[tuple[int, int]]:
    """The QR's dark modules from the path image's unit squares ``Mx,yH..V..H..z``."""
    path = re.search(r'<path d="([^"]+)"', svg)
    assert path is not None
    return {
        (int(x) - border, int(y) - border) for x, y in re.findall(r"M(\d+),(\d+)H", path.group(1))
    }


def test_a_fee_gives_the_slips_vietqr_on_screen(http: httpx.Client) -> None:
    result = file(http, *COPY)
    code, payment = result["code"], result["payment"]
    assert payment["amount_vnd"] == result["fee_vnd"] > 0
    qr = parse_payload(payment["vietqr"])
    assert (qr.bank_bin, qr.account) == (REAL_ACCOUNT["bank_bin"], REAL_ACCOUNT["account"])
    assert qr.amount_vnd == result["fee_vnd"] and qr.purpose == f"HS {code}"
    assert payment["qr_svg"] == f"{V1}/filings/{code}/payment-qr.svg"

    r = http.get(payment["qr_svg"])
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    svg = r.text
    assert svg.startswith("<svg") and "style" not in svg and "<script" not in svg
    matrix = qr_matrix(payment["vietqr"])  # what the slip's QR is made of
    want = {(x, y) for y, row in enumerate(matrix) for x, dark in enumerate(row) if dark}
    assert dark_modules(svg) == want

    assert http.get(f"{V1}/filings/000.00.14.H56-261201-9999/payment-qr.svg").status_code == 404
    http.delete(f"{V1}/session")  # the citizen leaves: the code goes with them
    gone = http.get(payment["qr_svg"])
    assert gone.status_code == 404 and gone.json()["error"]["field"] == "code"


def test_no_fee_means_no_payment_code(http: httpx.Client) -> None:
    result = file(http, *BIRTH)
    assert result["fee_vnd"] == 0 and result["payment"] is None
    assert http.get(f"{V1}/filings/{result['code']}/payment-qr.svg").status_code == 404


@pytest.mark.parametrize(
    "payment",
    [{"bank_bin": "970415", "account": "0000000000"}, {**REAL_ACCOUNT, "payment_qr": False}],
    ids=["placeholder-account", "payment-qr-off"],
)
def test_no_account_means_no_payment_code(tmp_path: Path, payment: dict[str, Any]) -> None:
    app, srv = served(tmp_path, payment)
    try:
        with httpx.Client(base_url=srv.url, timeout=20.0) as http:
            result = file(http, *COPY)
            assert result["fee_vnd"] > 0 and result["payment"] is None
            assert http.get(f"{V1}/filings/{result['code']}/payment-qr.svg").status_code == 404
    finally:
        srv.stop()
        app.stop()
