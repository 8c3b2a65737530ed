"""``aps-central config`` and ``aps-central job``: remote configuration and remote jobs.

Thin layers over :mod:`central.fleet.desired_config` and :mod:`central.fleet.jobs`
(docs/remote-ops.md). Every change is audited with the unix user as actor.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click

from central.cli_backoffice import _config_option, _json_option, _open, actor
from central.fleet import desired_config, jobs
from sync.jobs import DEFAULT_DEADLINE_S, JOB_KINDS, JobError, JobState, parse_deadline
from sync.remote_config import SETTINGS, RemoteConfigError, parse_setting


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except (JobError, RemoteConfigError) as exc:
        raise click.ClickException(str(exc)) from None


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


# -- config ------------------------------------------------------------------------------
@click.group("config")
def config_group() -> None:
    """Remote configuration of kiosk agents, per office or per kiosk (docs/remote-ops.md)."""


def _scope_options(f: Any) -> Any:
    f = click.option("--kiosk", default=None, help="One kiosk (overrides its office).")(f)
    return click.option("--office", default=None, help="Every kiosk of an office (agency).")(f)


@config_group.command("set")
@_config_option
@_scope_options
@click.option("--unset", multiple=True, help="Remove a desired value (repeatable).")
@click.argument("values", nargs=-1)
def config_set(
    config_path: str,
    office: str | None,
    kiosk: str | None,
    unset: tuple[str, ...],
    values: tuple[str, ...],
) -> None:
    """Set VALUES (key=value ...) for --office O or --kiosk K; sends new versions.

    Settable:"""
    with _errors():
        parsed = dict(parse_setting(v) for v in values)
        with _open(config_path) as (_, conn):
            sent = desired_config.set_values(
                conn, office=office, kiosk=kiosk, values=parsed, unset=list(unset), actor=actor()
            )
    if not sent:
        click.echo("no kiosk's effective configuration changed")
    for target, version in sorted(sent.items()):
        click.echo(f"{target}: version {version} sent")


config_set.help = (config_set.help or "") + ", ".join(
    f"{name} ({s.help})" for name, s in SETTINGS.items()
)


@config_group.command("show")
@_config_option
@_scope_options
@_json_option
def config_show(config_path: str, office: str | None, kiosk: str | None, as_json: bool) -> None:
    """Desired values; for a kiosk also effective, sent, running and the last report."""
    with _errors(), _open(config_path) as (_, conn):
        shown = desired_config.show(conn, office=office, kiosk=kiosk)
    if as_json:
        _echo_json(shown)
        return
    click.echo(f"{shown['scope']}")
    for key, value in shown["desired"].items():
        click.echo(f"  desired  {key} = {json.dumps(value, ensure_ascii=False)}")
    if kiosk is not None:
        for key, value in shown["effective"].items():
            click.echo(f"  effective  {key} = {json.dumps(value, ensure_ascii=False)}")
        click.echo(
            f"  sent version {shown['sent_version'] or '-'}, "
            f"running version {shown['running_version'] or '-'}"
        )
        report = shown["last_report"]
        if report is not None:
            why = f": {report['reason']}" if report["reason"] else ""
            click.echo(f"  last report: version {report['version']} {report['state']}{why}")
    else:
        for name, row in shown["kiosks"].items():
            click.echo(
                f"  {name}: sent {row['sent_version'] or '-'}, running "
                f"{row['running_version'] or '-'}"
            )


@config_group.command("history")
@_config_option
@_scope_options
@click.option("--limit", default=50, show_default=True, help="At most this many entries.")
@_json_option
def config_history(
    config_path: str, office: str | None, kiosk: str | None, limit: int, as_json: bool
) -> None:
    """Who set what, the versions sent, and what the kiosk said (newest first)."""
    with _errors(), _open(config_path) as (_, conn):
        rows = desired_config.history(conn, office=office, kiosk=kiosk, limit=limit)
    if as_json:
        _echo_json(rows)
        return
    for row in rows:
        click.echo(
            f"{_when(row['at'])}  {row['actor']}  {row['action']}  "
            f"{json.dumps(row['detail'], ensure_ascii=False)}"
        )


# -- job ----------------------------------------------------------------------------------
@click.group("job")
def job_group() -> None:
    """Remote jobs on kiosks: create, list, show, cancel (docs/remote-ops.md)."""


def _when(at: float | str | None) -> str:
    if at is None:
        return "-"
    if isinstance(at, str):
        return at
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


@job_group.command("create")
@_config_option
@click.argument("kind", type=click.Choice(JOB_KINDS))
@click.option("--kiosk", "kiosks", multiple=True, help="A kiosk (repeatable).")
@click.option("--office", default=None, help="Every kiosk of an office (agency).")
@click.option(
    "--deadline",
    default=f"{DEFAULT_DEADLINE_S // 60}m",
    show_default=True,
    help="How long the job may take, from now (30s to 7d): then it is timed-out.",
)
@click.argument("args", nargs=-1)
@_json_option
def job_create(
    config_path: str,
    kind: str,
    kiosks: tuple[str, ...],
    office: str | None,
    deadline: str,
    args: tuple[str, ...],
    as_json: bool,
) -> None:
    """Queue KIND (with ARGS as name=value) on --kiosk K or every kiosk of --office O."""
    with _errors():
        seconds = parse_deadline(deadline)
        values: dict[str, str] = {}
        for arg in args:
            name, sep, value = arg.partition("=")
            if not sep:
                raise JobError(f"argument {arg!r}: expected name=value")
            values[name] = value
        with _open(config_path) as (_, conn):
            made = jobs.create(
                conn,
                kind,
                kiosks=kiosks,
                office=office,
                args=values,
                deadline_s=seconds,
                actor=actor(),
            )
    if as_json:
        _echo_json([j.to_json_dict() for j in made])
        return
    for job in made:
        click.echo(f"{job.id}  {job.kiosk}  {job.kind}  queued until {_when(job.deadline_at)}")


def _row(job: jobs.Job) -> str:
    info = job.error or job.step or ""
    return (
        f"{job.id}  {job.kiosk:<16}  {job.kind:<19}  {job.state.value:<11}  "
        f"{_when(job.created_at)}  {info}"
    ).rstrip()


@job_group.command("list")
@_config_option
@click.option("--kiosk", default=None, help="Only this kiosk.")
@click.option("--office", "offices", multiple=True, help="Only these offices (repeatable).")
@click.option("--state", "states", multiple=True, type=click.Choice([s.value for s in JobState]))
@click.option("--limit", default=100, show_default=True, help="At most this many jobs.")
@_json_option
def job_list(
    config_path: str,
    kiosk: str | None,
    offices: tuple[str, ...],
    states: tuple[str, ...],
    limit: int,
    as_json: bool,
) -> None:
    """Jobs, newest first (states as read now: a job past its deadline is timed-out)."""
    with _errors(), _open(config_path) as (_, conn):
        found = jobs.list_jobs(
            conn,
            kiosk=kiosk,
            offices=offices or None,
            states=states or None,
            limit=limit,
        )
    if as_json:
        _echo_json([j.to_json_dict() for j in found])
        return
    click.echo(f"{'ID':<26}  {'KIOSK':<16}  {'KIND':<19}  {'STATE':<11}  CREATED")
    for job in found:
        click.echo(_row(job))


@job_group.command("show")
@_config_option
@click.argument("job_id")
@_json_option
def job_show(config_path: str, job_id: str, as_json: bool) -> None:
    """One job with its events (created, reports, cancel, expiry)."""
    with _errors(), _open(config_path) as (_, conn):
        job = jobs.get_job(conn, job_id)
        if job is None:
            raise click.ClickException(f"job {job_id!r}: no such job (aps-central job list)")
        events = jobs.job_events(conn, job_id)
    out = {**job.to_json_dict(), "events": events}
    if as_json:
        _echo_json(out)
        return
    for key in (
        "id",
        "kiosk",
        "kind",
        "args",
        "state",
        "actor",
        "created_at",
        "deadline_at",
        "started_at",
        "finished_at",
        "step",
        "error",
        "result",
    ):
        value = out[key]
        if value not in (None, {}):
            text = json.dumps(value, ensure_ascii=False) if isinstance(value, dict) else value
            click.echo(f"{key:<12} {text}")
    click.echo("events:")
    for e in events:
        flag = "" if e["applied"] else "  (ignored)"
        extra = " ".join(x for x in (e["step"], e["detail"]) if x)
        line = f"  {e['at']}  {e['source']:<20}  {e['event']:<14} -> {e['state']}  {extra}{flag}"
        click.echo(line.rstrip())


@job_group.command("cancel")
@_config_option
@click.argument("job_id")
def job_cancel(config_path: str, job_id: str) -> None:
    """Cancel a job that has not started yet."""
    with _errors(), _open(config_path) as (_, conn):
        job = jobs.cancel_job(conn, job_id, actor=actor())
    click.echo(f"{job.id}: {job.state.value}")
