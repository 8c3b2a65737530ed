"""Generate docs/cli.md and docs/configuration.md from the code (tests keep them current)."""

from __future__ import annotations

import click

from central.cli import main as central_main
from central.config import CentralConfig
from edge_agent.cli import main as agent_main
from edge_agent.config import AgentConfig
from edge_agent.demo import main as demo_main
from sync.config import markdown_reference


def _walk(cmd: click.Command, path: list[str], out: list[str]) -> None:
    ctx = click.Context(cmd, info_name=" ".join(path), terminal_width=88, max_content_width=88)
    out += [f"## `{' '.join(path)}`", "", "```", cmd.get_help(ctx).rstrip(), "```", ""]
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.list_commands(ctx)):
            sub = cmd.get_command(ctx, name)
            if sub is not None:
                _walk(sub, [*path, name], out)


def cli_reference() -> str:
    out = [
        "# Command reference",
        "",
        "Generated from `--help` by `python -m edge_agent.docgen`; "
        "`tests/test_docs.py` fails when it is stale.",
        "",
    ]
    for cmd, name in (
        (agent_main, "aps-agent"),
        (central_main, "aps-central"),
        (demo_main, "aps-demo"),
    ):
        _walk(cmd, [name], out)
    return "\n".join(out)


def configuration_reference() -> str:
    return "\n".join(
        [
            "# Configuration reference",
            "",
            "One TOML file per role. Every key, its default and its meaning; generated from",
            "the typed models (`python -m edge_agent.docgen`), and `tests/test_docs.py` fails",
            "when this page is stale. Unknown keys are refused at start, and every error",
            "names the key and the file. Check a file with `aps-agent check-config`.",
            "",
            markdown_reference(AgentConfig, "Kiosk agent (`/etc/aps/agent.toml`)"),
            markdown_reference(CentralConfig, "Central (`/etc/aps/central.toml`)"),
        ]
    )


def main() -> None:
    from pathlib import Path

    Path("docs/cli.md").write_text(cli_reference() + "\n", encoding="utf-8")
    Path("docs/configuration.md").write_text(configuration_reference() + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
