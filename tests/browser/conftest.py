"""Fixtures for the browser tests: Debian's chromium, the whole kiosk stack, a page.

- ``browser`` (session): headless /usr/bin/chromium through Playwright (never a
  downloaded browser). Without chromium the tests are skipped locally; under CI
  (``CI=true``) they fail instead, since ``scripts/bootstrap.sh`` installs it.
- ``ui_stack``: broker, central, the kiosk app with emulated devices and its local API
  (tests/browser/ui_stack.py). ``ui_stack_factory(session_idle_s=...)`` makes one with
  other options; both are stopped at the test's end.
- ``page``: a new browser context per test (1280x800, touch, vi-VN) on the stack's
  page; console errors and page errors fail the test at teardown.
- ``shot(page, name)``: a PNG to docs/img/ui-<name>.png with ``--ui-screenshots`` (or
  ``APS_UI_SCREENSHOTS=1``), else to the test's temporary directory. The option is
  known only when pytest is pointed at tests/browser (``pytest tests/browser
  --ui-screenshots``): a bare ``pytest`` loads this file too late for options; there,
  use ``APS_UI_SCREENSHOTS=1 pytest -m browser``.
- ``assert_accessible(page, name)`` (tests.browser.a11y): axe-core, WCAG A/AA/AAA and
  best practices; serious or critical violations fail.

Every test here that uses one of these fixtures is marked ``browser`` (``-m 'not
browser'`` skips them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from central.mosquitto import TestPki
from tests.browser.a11y import route_axe, screenshots_wanted, shot_path, take_shot
from tests.browser.ui_stack import UiStack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}
HERE = Path(__file__).resolve().parent
#: Console messages that are not the page's fault (none known yet; keep this list short).
IGNORED_CONSOLE: tuple[str, ...] = ()


#: Fixtures that make a test a browser test (the ``browser`` marker is added for them).
BROWSER_FIXTURES = {"browser", "browser_context", "page", "ui_stack", "ui_stack_factory"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        uses = set(getattr(item, "fixturenames", ()))
        if HERE in Path(str(item.fspath)).resolve().parents and uses & BROWSER_FIXTURES:
            item.add_marker(pytest.mark.browser)


def _ui_screenshots_option(config: pytest.Config) -> bool:
    try:
        return bool(config.getoption("--ui-screenshots"))
    except ValueError:  # the option was registered too late (conftest not loaded first)
        return False


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Headless Debian chromium driven by Playwright, one for tests/browser (package scope: its
    event loop is gone before the other tests, which may run asyncio themselves)."""
    if not CHROMIUM.exists():
        # never a skip: the browser tests are part of done, and the README's test command
        # installs chromium (scripts/bootstrap.sh)
        pytest.fail(f"{CHROMIUM} missing: run scripts/bootstrap.sh (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


class StackFactory(Protocol):
    def __call__(self, *, session_idle_s: float = ..., kiosk_extra: str = ...) -> UiStack: ...


@pytest.fixture
def ui_stack_factory(tmp_path: Path, test_pki: TestPki) -> Iterator[StackFactory]:
    """Make a stack with options: ``ui_stack_factory(session_idle_s=12)``."""
    made: list[UiStack] = []

    def make(*, session_idle_s: float = 120.0, kiosk_extra: str = "") -> UiStack:
        stack = UiStack(
            tmp_path / f"stack{len(made)}",
            test_pki,
            session_idle_s=session_idle_s,
            kiosk_extra=kiosk_extra,
        )
        made.append(stack)
        return stack.start()

    try:
        yield make
    finally:
        for stack in reversed(made):
            stack.close()


@pytest.fixture
def ui_stack(request: pytest.FixtureRequest, ui_stack_factory: StackFactory) -> UiStack:
    """The whole stack with default options; ``@pytest.mark.parametrize("ui_stack",
    [{"session_idle_s": 12}], indirect=True)`` passes options."""
    options = getattr(request, "param", None) or {}
    return ui_stack_factory(**options)


class PageErrors:
    """Console errors and uncaught page errors seen in one test's context."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.expected: list[str] = []

    def expect(self, fragment: str) -> None:
        """A test that provokes an error on purpose names a fragment of its text."""
        self.expected.append(fragment)

    def unexpected(self) -> list[str]:
        skip = (*IGNORED_CONSOLE, *self.expected)
        return [m for m in self.messages if not any(s in m for s in skip)]


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


@pytest.fixture
def browser_context(browser: Any) -> Iterator[Any]:
    """A new context per test: 1280x800, touch, Vietnamese locale; axe reachable."""
    context = browser.new_context(
        viewport=VIEWPORT,
        has_touch=True,
        locale="vi-VN",
        timezone_id="Asia/Ho_Chi_Minh",
    )
    context.set_default_timeout(15_000)
    route_axe(context)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def page(browser_context: Any, ui_stack: UiStack, page_errors: PageErrors) -> Iterator[Any]:
    """The kiosk screen at ``ui_stack.url``; console/page errors fail the test at teardown."""
    p = browser_context.new_page()

    def on_console(msg: Any) -> None:
        if msg.type == "error":
            loc = msg.location or {}
            page_errors.messages.append(f"console.error: {msg.text} ({loc.get('url', '')})")

    p.on("console", on_console)
    p.on("pageerror", lambda exc: page_errors.messages.append(f"page error: {exc}"))
    p.goto(ui_stack.url + "/")
    # the first screen is on the page: its start-up check (an unconfirmed filing) is done, so a
    # test filing behind the page's back cannot race it
    p.wait_for_selector("#screen > *")
    yield p
    bad = page_errors.unexpected()
    if bad:
        pytest.fail("the page logged errors:\n" + "\n".join(bad), pytrace=False)


@pytest.fixture
def shot(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Any, str], Path]:
    """``shot(page, "home")``: docs/img/ui-home.png with --ui-screenshots, else tmp."""
    to_docs = screenshots_wanted(_ui_screenshots_option(request.config))

    def take(page: Any, name: str) -> Path:
        return take_shot(page, shot_path(name, to_docs=to_docs, tmp_dir=tmp_path / "shots"))

    return take
