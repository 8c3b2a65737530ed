"""``aps-central release ...`` and ``aps-central rollout ...`` (docs/updates.md).

Thin over :mod:`central.fleet.releases` and :mod:`central.fleet.rollout`.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import click

from central.cli_backoffice import _config_option, _open, actor
from central.cli_health import open_status_source
from central.config import CentralConfig, load_central_config
from central.fleet import rollout as ro
from central.fleet.releases import PROJECT_WHEEL, ReleaseError, ReleaseStore, wheels_of
from sync.config import ConfigError
from sync.release_manifest import compare_versions, is_version

_SCHEMA_LINE = re.compile(rb"^SCHEMA_VERSION = (\d+)$", re.M)


def _cfg(config_path: str) -> CentralConfig:
    try:
        return load_central_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def outbox_schema_of(wheel: Path) -> int:
    """The outbox schema the release writes, read from its own sync/outbox.py."""
    try:
        with zipfile.ZipFile(wheel) as z:
            source = z.read("sync/outbox.py")
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise click.ClickException(f"{wheel}: cannot read sync/outbox.py from it ({exc})") from None
    match = _SCHEMA_LINE.search(source)
    if match is None:
        raise click.ClickException(f"{wheel}: sync/outbox.py names no SCHEMA_VERSION")
    return int(match.group(1))


@click.group("release")
def release() -> None:
    """Signed software releases for the kiosks (docs/updates.md)."""


@release.command("add")
@_config_option
@click.option("--version", "version", required=True, help="The release's version, e.g. 0.2.0.")
@click.option(
    "--min-rollback",
    default=None,
    help="Oldest release this one may roll back to (default: the newest published before it).",
)
@click.argument("wheels", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def release_add(
    config_path: str, version: str, min_rollback: str | None, wheels: tuple[Path, ...]
) -> None:
    """Publish WHEELS (files or a wheelhouse directory) as release --version, signed."""
    cfg = _cfg(config_path)
    store = ReleaseStore(cfg.updates.releases_dir)
    try:
        files = wheels_of(wheels)
        own = [f for f in files if f.name.startswith(f"{PROJECT_WHEEL}-{version}-")]
        schema = outbox_schema_of(own[0]) if own else 1
        if not is_version(version):
            raise ReleaseError(f"--version {version!r}: expected dotted numbers, such as 0.2.0")
        if min_rollback is None:
            older = [v for v in store.versions() if compare_versions(v, version) < 0]
            min_rollback = older[-1] if older else version
        rel = store.add(
            version,
            files,
            key=cfg.security.load_signing_key(),
            outbox_schema=schema,
            min_rollback=min_rollback,
        )
    except (ReleaseError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    m = rel.manifest
    click.echo(
        f"release {m.version}: {len(m.files)} files, {m.total_bytes} bytes, outbox schema "
        f"{m.outbox_schema}, rolls back to {m.min_rollback} or newer; signed by {m.kid}"
    )
    click.echo(f"manifest: /v1/releases/{m.version}/manifest.json")


@release.command("list")
@_config_option
def release_list(config_path: str) -> None:
    """The published releases, oldest first."""
    cfg = _cfg(config_path)
    for v in ReleaseStore(cfg.updates.releases_dir).versions():
        click.echo(v)


@release.command("show")
@_config_option
@click.argument("version")
def release_show(config_path: str, version: str) -> None:
    """Print (JSON) release VERSION's manifest, its signature checked."""
    cfg = _cfg(config_path)
    store = ReleaseStore(cfg.updates.releases_dir)
    try:
        rel = store.get(version, cfg.security.load_signing_key().public_key())
    except (ReleaseError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    out = rel.manifest.to_object()
    out["signed_by"] = rel.manifest.kid
    click.echo(json.dumps(out, indent=2))


@click.group("rollout")
def rollout() -> None:
    """Roll a release out in rings: canary, office, all (docs/updates.md)."""


@rollout.command("start")
@_config_option
@click.argument("version")
@click.option("--canary", multiple=True, required=True, help="A kiosk to take it first (repeat).")
@click.option("--office", default=None, help="The office of the second ring.")
@click.option("--soak", "soak_s", type=float, default=None, help="Seconds a ring soaks at most.")
@click.option("--max-failure-rate", type=float, default=None, help="Stop above this share failed.")
def rollout_start(
    config_path: str,
    version: str,
    canary: tuple[str, ...],
    office: str | None,
    soak_s: float | None,
    max_failure_rate: float | None,
) -> None:
    """Start rolling release VERSION out, canary kiosks first."""
    with _open(config_path) as (cfg, conn):
        if version not in ReleaseStore(cfg.updates.releases_dir).versions():
            raise click.ClickException(f"no release {version}: `aps-central release add` first")
        try:
            r = ro.start(
                conn,
                version,
                actor=actor(),
                canary=canary,
                office=office,
                soak_s=cfg.updates.soak_s if soak_s is None else soak_s,
                max_failure_rate=(
                    cfg.updates.max_failure_rate if max_failure_rate is None else max_failure_rate
                ),
            )
        except ro.RolloutError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"rollout {r.id} of {r.version} started: canary {', '.join(r.canary)}")


@rollout.command("status")
@_config_option
def rollout_status(config_path: str) -> None:
    """Print (JSON) every rollout, newest first, with its current ring's counts."""
    with _open(config_path) as (cfg, conn):
        records = open_status_source(cfg, config_path)  # the kiosks' status rows, if in PG
        try:
            status = ro.rollout_status(conn, records)
        finally:
            if records is not None:
                records.close()
        click.echo(json.dumps(status, indent=2, ensure_ascii=False))


def _change(config_path: str, what: str) -> None:
    with _open(config_path) as (_cfg, conn):
        try:
            r = ro.change(conn, what, actor=actor())
        except ro.RolloutError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"rollout {r.id} of {r.version}: {r.state}")


@rollout.command("pause")
@_config_option
def rollout_pause(config_path: str) -> None:
    """Pause the active rollout (no ring advances)."""
    _change(config_path, "pause")


@rollout.command("resume")
@_config_option
def rollout_resume(config_path: str) -> None:
    """Resume a paused or stopped rollout (the ring's soak starts again)."""
    _change(config_path, "resume")


@rollout.command("abort")
@_config_option
def rollout_abort(config_path: str) -> None:
    """End the active rollout; its kiosks are no longer asked for the release."""
    _change(config_path, "abort")


@rollout.command("tick")
@_config_option
def rollout_tick(config_path: str) -> None:
    """Judge the running rollout's ring once (central does this by itself as it runs)."""
    with _open(config_path) as (_cfg, conn):
        done = ro.tick(conn, actor=actor())
        ordered = ro.dispatch_jobs(conn, actor=actor())
    click.echo(done or "no change")
    if ordered:
        click.echo(f"update ordered on {', '.join(ordered)}")
