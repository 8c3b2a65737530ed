"""No input gives the local API a 5xx: schemathesis over its OpenAPI document.

Every operation (but the endless event stream, tested in test_api_local.py)
is called with requests schemathesis generates from the document, valid and
invalid ones, against a real KioskApp served by uvicorn on loopback.
(schemathesis's own pytest plugin does not run under pytest 9, so the
operations' hypothesis strategies are driven here directly.)
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from drivers.document_camera import DocumentCamera
from edge_agent.api import ApiServer
from edge_agent.app import KioskApp
from firmware_mocks.v4l2_camera import EmulatedV4l2Camera
from tests.kiosk import app_config, card

EXAMPLES = 25


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ApiServer]:
    # An emulated document camera, so the capture operations get past "no camera".
    cam = EmulatedV4l2Camera(width=640, height=480, pixel_format="YUYV")
    url = "v4l2:///dev/video0?width=640&height=480&format=YUYV&warmup=1"
    cfg = app_config(tmp_path, devices={"document_camera": url})
    app = KioskApp(cfg, camera=DocumentCamera(url, source=cam, reopen_s=0))
    app.identify(card())  # a card read: prepare gets as far as the form
    srv = ApiServer(app, "127.0.0.1:0", max_body_kb=64)
    srv.start()
    yield srv
    srv.stop()
    app.stop()


def operations(served: ApiServer) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{served.url}/api/v1/openapi.json")
    ops = [result.ok() for result in schema.get_all_operations()]
    return [op for op in ops if op.path != "/api/v1/events"]


def test_the_document_lists_every_endpoint(served: ApiServer) -> None:
    paths = {op.path for op in operations(served)}
    assert len(paths) >= 28, paths
    assert {
        "/api/v1/filings",
        "/api/v1/signing/{transaction}",
        "/api/v1/health",
        "/api/v1/kiosk",
        "/api/v1/speech",
        "/api/v1/session/activity",
        "/api/v1/capture",
        "/api/v1/capture/{preview_id}.jpg",
        "/api/v1/capture/{preview_id}/accept",
        "/api/v1/capture/{preview_id}/retake",
        "/api/v1/capture/{preview_id}",
        "/api/v1/filings/{code}/payment-qr.svg",
        "/api/v1/filings/{code}/reprint",
    } <= paths


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_gives_a_server_error(served: ApiServer, mode: GenerationMode) -> None:
    called: list[int] = []
    answered: set[tuple[str, str, int]] = set()
    for op in operations(served):

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call(base_url=served.url, timeout=10)
            called.append(response.status_code)
            answered.add((case.method.upper(), case.operation.path, response.status_code))
            case.validate_response(response, checks=[not_a_server_error])
            if response.status_code >= 400:
                error = response.json().get("error")
                assert error is not None, (response.status_code, case.operation.path, response.text)
                assert error["message"] and error["message_vi"], error

        try:
            check()
        except Unsatisfiable:
            # nothing to make invalid: an operation without parameters or body
            assert mode is GenerationMode.NEGATIVE and not (
                op.body or op.query or op.path_parameters
            )
    assert called and all(code < 500 for code in called)
    assert any(code >= 400 for code in called)  # the fuzz did reach the refusals
    if mode is GenerationMode.POSITIVE:
        # espeak-ng is installed here: generated texts are read aloud (a 503 fails above),
        # and the emulated camera answers the capture
        if shutil.which("espeak-ng"):
            assert ("POST", "/api/v1/speech", 200) in answered
        assert ("POST", "/api/v1/capture", 200) in answered
