"""Generated docs stay current; every command has help text."""

from __future__ import annotations

from pathlib import Path

from edge_agent.docgen import cli_reference, configuration_reference

ROOT = Path(__file__).resolve().parent.parent


def test_cli_reference_is_current() -> None:
    assert (ROOT / "docs/cli.md").read_text(encoding="utf-8") == cli_reference() + "\n", (
        "docs/cli.md is stale: run 'python -m edge_agent.docgen'"
    )


def test_configuration_reference_is_current() -> None:
    text = (ROOT / "docs/configuration.md").read_text(encoding="utf-8")
    assert text == configuration_reference() + "\n", (
        "docs/configuration.md is stale: run 'python -m edge_agent.docgen'"
    )


def test_every_command_has_help() -> None:
    ref = cli_reference()
    blocks = ref.split("## `")[1:]
    assert blocks
    for block in blocks:
        body = block.split("```")[1]
        lines = [ln for ln in body.splitlines() if ln.strip()]
        # Usage line, then a description line.
        assert len(lines) >= 2 and not lines[1].startswith("Options:"), block[:80]
