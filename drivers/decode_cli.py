"""Technician commands: ``decode qr TEXT`` and ``decode mrz LINE1 LINE2 LINE3``.

A thin click layer over :mod:`drivers.cccd_qr` and :mod:`drivers.mrz`; the
``aps-agent`` CLI attaches :data:`decode` as a sub-group. Output is one JSON
object on stdout (UTF-8, not ASCII-escaped, so Vietnamese names stay legible);
a malformed input prints ``error: ...`` on stderr and exits with status 2.
"""

from __future__ import annotations

import json

import click

from drivers.cccd_qr import QrFormatError, parse_cccd_qr
from drivers.identity import Identity
from drivers.mrz import MrzFormatError, parse_td1

__all__ = ["EXIT_BAD_INPUT", "decode"]

#: Exit status for input that does not parse (click's own usage errors use 2 too).
EXIT_BAD_INPUT = 2


def _emit(identity: Identity) -> None:
    click.echo(json.dumps(identity.to_json_dict(), ensure_ascii=False, sort_keys=True))


def _fail(ctx: click.Context, error: Exception) -> None:
    click.echo(f"error: {error}", err=True)
    ctx.exit(EXIT_BAD_INPUT)


@click.group(name="decode")
def decode() -> None:
    """Decode an identity document scanned by hand and print it as JSON."""


@decode.command(name="qr")
@click.argument("text")
@click.pass_context
def decode_qr(ctx: click.Context, text: str) -> None:
    """Decode the TEXT of a CCCD card's QR code (fields separated by '|')."""
    try:
        identity = parse_cccd_qr(text)
    except QrFormatError as exc:
        _fail(ctx, exc)
        return
    _emit(identity)


@decode.command(name="mrz")
@click.argument("line1")
@click.argument("line2")
@click.argument("line3")
@click.pass_context
def decode_mrz(ctx: click.Context, line1: str, line2: str, line3: str) -> None:
    """Decode a TD1 machine-readable zone given as its three 30-character lines."""
    try:
        identity = parse_td1(line1, line2, line3)
    except MrzFormatError as exc:
        _fail(ctx, exc)
        return
    _emit(identity)
