"""The install layout: the switch never leaves ``current`` missing; pruning keeps two."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge_agent.updater import UpdateError
from edge_agent.updater.layout import Layout
from tests.update_layout import fake_release, point_current


def test_the_switch_replaces_the_link_in_one_rename_never_removing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for v in ("0.1.0", "0.2.0"):
        fake_release(tmp_path, v)
    point_current(tmp_path, "0.1.0")
    layout = Layout(tmp_path)
    real_unlink, real_remove = os.unlink, os.remove

    def guarded(path: object, *a: object, **k: object) -> None:
        assert Path(str(path)) != layout.current, "current was removed: not atomic"
        real_unlink(path, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "unlink", guarded)
    monkeypatch.setattr(os, "remove", guarded)
    layout.switch_to("0.2.0")
    monkeypatch.setattr(os, "unlink", real_unlink)
    monkeypatch.setattr(os, "remove", real_remove)
    assert os.readlink(layout.current) == "releases/0.2.0"
    assert not list(tmp_path.glob(".current.*"))


def test_an_incomplete_release_is_never_switched_to(tmp_path: Path) -> None:
    fake_release(tmp_path, "0.1.0")
    point_current(tmp_path, "0.1.0")
    rel = fake_release(tmp_path, "0.2.0")
    (rel / ".aps-release").unlink()  # half-built
    with pytest.raises(UpdateError, match="not complete"):
        Layout(tmp_path).switch_to("0.2.0")
    assert Layout(tmp_path).running_version() == "0.1.0"


def test_prune_keeps_the_running_release_and_the_ones_named(tmp_path: Path) -> None:
    for v in ("0.1.0", "0.2.0", "0.3.0", "0.10.0"):
        fake_release(tmp_path, v)
    point_current(tmp_path, "0.3.0")
    layout = Layout(tmp_path)
    assert layout.installed() == ["0.1.0", "0.2.0", "0.3.0", "0.10.0"]  # by version
    assert layout.prune({"0.10.0", "0.3.0"}) == ["0.1.0", "0.2.0"]
    assert layout.installed() == ["0.3.0", "0.10.0"]
    assert layout.prune(set()) == ["0.10.0"]  # never the running one
    assert layout.running_version() == "0.3.0"
