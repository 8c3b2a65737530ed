"""Accessibility scans (axe-core, vendored) and screenshots of the screen under test.

axe-core goes into the page the way the page's own scripts do: the test context routes
one same-origin path (:data:`AXE_PATH`) to the vendored file, and a ``<script src>`` for
it is added. The page's content security policy (``script-src 'self'``) stays in force,
so a test also proves the screen works under the policy the box serves. The kiosk itself
never serves axe: the path exists only inside the test's browser context.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

from playwright.sync_api import BrowserContext, Page

VENDOR = Path(__file__).resolve().parent / "vendor"
AXE_DIR = next(iter(sorted(VENDOR.glob("axe-core-*"))), VENDOR / "axe-core-missing")
AXE_JS = AXE_DIR / "axe.min.js"
AXE_VERSION = AXE_DIR.name.removeprefix("axe-core-")
#: The same-origin path the test context answers with the vendored axe (never the agent).
AXE_PATH = "/__browser-test__/axe.min.js"
#: WCAG 2.0/2.1/2.2 at A, AA and AAA, plus axe's best practices.
AXE_TAGS = [
    "wcag2a",
    "wcag2aa",
    "wcag2aaa",
    "wcag21a",
    "wcag21aa",
    "wcag21aaa",
    "wcag22a",
    "wcag22aa",
    "wcag22aaa",
    "best-practice",
]
FAILING_IMPACTS = ("serious", "critical")
ROOT = Path(__file__).resolve().parents[2]
DOCS_IMG = ROOT / "docs" / "img"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,60}$")


def route_axe(context: BrowserContext) -> None:
    """Answer :data:`AXE_PATH` on any origin of ``context`` with the vendored axe-core."""
    body = AXE_JS.read_bytes()
    context.route(
        f"**{AXE_PATH}",
        lambda route: route.fulfill(
            status=200, body=body, headers={"Content-Type": "text/javascript; charset=utf-8"}
        ),
    )


def axe_results(page: Page) -> dict[str, Any]:
    """Run axe on the page as it is now; returns axe's results object."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(url=AXE_PATH)
        page.wait_for_function("() => typeof window.axe === 'object'", timeout=10_000)
    results: dict[str, Any] = page.evaluate(
        """async (tags) => {
            const r = await window.axe.run(document, {
                runOnly: { type: "tag", values: tags },
                resultTypes: ["violations"],
            });
            return { violations: r.violations, testEngine: r.testEngine };
        }""",
        AXE_TAGS,
    )
    return results


def format_violations(violations: list[dict[str, Any]]) -> str:
    """One readable block per violation: rule, impact, help, the elements it hit."""
    lines = []
    for v in violations:
        lines.append(f"- {v['id']} ({v['impact']}): {v['help']} [{v.get('helpUrl', '')}]")
        for node in v.get("nodes", [])[:10]:
            target = " ".join(str(t) for t in node.get("target", []))
            summary = (node.get("failureSummary") or "").replace("\n", " ")
            lines.append(f"    at {target}: {summary[:300]}")
        if len(v.get("nodes", [])) > 10:
            lines.append(f"    ... and {len(v['nodes']) - 10} more")
    return "\n".join(lines)


def assert_accessible(page: Page, name: str) -> list[dict[str, Any]]:
    """Fail on any serious or critical axe violation of the screen ``name``.

    Returns the minor and moderate ones (for a test that wants to look at them).
    """
    violations = axe_results(page)["violations"]
    bad = [v for v in violations if v.get("impact") in FAILING_IMPACTS]
    if bad:
        raise AssertionError(
            f"screen {name!r}: {len(bad)} serious/critical accessibility violation(s) "
            f"(axe-core {AXE_VERSION}):\n{format_violations(bad)}"
        )
    return [v for v in violations if v not in bad]


def screenshots_wanted(option: bool) -> bool:
    """``--ui-screenshots`` given, or ``APS_UI_SCREENSHOTS=1`` in the environment."""
    return option or os.environ.get("APS_UI_SCREENSHOTS", "") not in ("", "0")


def shot_path(name: str, *, to_docs: bool, tmp_dir: Path | None = None) -> Path:
    """docs/img/ui-<name>.png when asked for, else a file under the test's temporary dir."""
    if not _NAME.match(name):
        raise ValueError(f"screenshot name {name!r}: use lower-case letters, digits and '-'")
    if to_docs:
        return DOCS_IMG / f"ui-{name}.png"
    base = tmp_dir or Path(tempfile.gettempdir()) / "aps-ui-shots"
    return base / f"ui-{name}.png"


def take_shot(page: Page, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=False, animations="disabled", caret="hide")
    return path
