"""``aps-central signing ...``: try the configured remote-signing provider by hand.

One command, ``try``: it goes through the same :class:`~central.signing.SigningService`
the kiosks use (as a pseudo-kiosk ``cli``), so a technician who just filled in
``[signing]`` can see the whole round trip, the approval on the citizen's phone
included, before any kiosk depends on it. It prints one JSON line per state
change and exits 0 only when a signature came back and verified.
"""

from __future__ import annotations

import hashlib
import json
import time

import click

from central.signing import signing_service


@click.group("signing")
def signing() -> None:
    """Remote signing through central (docs/signing.md)."""


@signing.command("try")
@click.option(
    "--config",
    "config_path",
    default="/etc/aps/central.toml",
    show_default=True,
    help="Central's TOML configuration file.",
)
@click.option("--id-number", required=True, help="The signer's CCCD (12 digits) or CMND (9).")
@click.option(
    "--text",
    default="APS signing test",
    show_default=True,
    help="Text whose SHA-256 hash is signed.",
)
@click.option(
    "--wait-s",
    default=120.0,
    show_default=True,
    type=click.FloatRange(1, 3600),
    help="Give up after this many seconds without an answer.",
)
@click.option(
    "--interval-s",
    default=3.0,
    show_default=True,
    type=click.FloatRange(0.1, 60),
    help="Seconds between polls.",
)
def try_signing(
    config_path: str, id_number: str, text: str, wait_s: float, interval_s: float
) -> None:
    """Ask the provider to sign a test hash and wait for the approval in the app."""
    from central.cli import _load  # the shared loader: same errors as every command

    cfg = _load(config_path)
    service = signing_service(cfg.signing.settings())
    digest = hashlib.sha256(text.encode()).hexdigest()
    try:
        reply = service.start(
            "cli",
            {
                "hash_sha256": digest,
                "document_name": "Thử ký số từ xa (APS)",
                "signer": {"id_number": id_number},
            },
        )
        click.echo(json.dumps({"step": "start", "hash_sha256": digest, **reply}))
        if "error" in reply:
            raise SystemExit(1)
        deadline = time.monotonic() + wait_s
        last = None
        while True:
            answer = service.poll("cli", {"transaction": reply["transaction"]})
            state = answer.get("state") or answer.get("error")
            if state != last:
                shown = {k: v for k, v in answer.items() if k != "value_b64"}
                if "value_b64" in answer:
                    shown["value_bytes"] = len(answer["value_b64"]) * 3 // 4
                click.echo(json.dumps({"step": "poll", **shown}, ensure_ascii=False))
                last = state
            if state == "signed":
                return
            if state not in ("pending", "provider-unavailable"):
                raise SystemExit(1)
            if time.monotonic() >= deadline:
                click.echo(json.dumps({"step": "gave-up", "after_s": wait_s}))
                raise SystemExit(1)
            time.sleep(interval_s)
    finally:
        service.close()
