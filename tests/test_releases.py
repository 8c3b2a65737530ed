"""Releases end to end without building: publish, serve over real HTTP, download with
Range, refuse a bad signature, a wrong hash, a truncated file (then resume), an outbox
schema the running release cannot read; the manifest's parser on garbage."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from central.fleet.releases import ReleaseError, ReleaseStore
from central.web.app import create_app
from central.web.common import ApiSettings
from central.web.server import ApiServer
from edge_agent.updater import UpdateError, state_file
from edge_agent.updater.apply import UpdaterSettings, apply_update, check_compatible
from edge_agent.updater.download import fetch_file
from edge_agent.updater.machine import State
from sync.envelope_signing import key_id, sign
from sync.release_manifest import (
    FileEntry,
    Manifest,
    ManifestError,
    check_fields,
    compare_versions,
    parse_manifest,
)
from tests.tcp_proxy import TcpProxy
from tests.update_layout import fake_release, point_current

KEY = Ed25519PrivateKey.generate()
KEYS = {key_id(KEY.public_key()): KEY.public_key()}


def _wheel(path: Path, name: str, payload: bytes) -> Path:
    whl = path / name
    with zipfile.ZipFile(whl, "w") as z:
        z.writestr("sync/outbox.py", b"SCHEMA_VERSION = 1\n")
        z.writestr("blob.bin", payload)
    return whl


@dataclass
class Central:
    url: str
    store: ReleaseStore
    port: int


@pytest.fixture
def central(tmp_path: Path) -> Iterator[Central]:
    store = ReleaseStore(tmp_path / "releases")
    src = tmp_path / "src"
    src.mkdir()
    # incompressible, so a truncated transfer really is partial
    big = hashlib.sha256(b"seed").digest() * 40_000
    _wheel(src, "aps_kiosk-0.2.0-py3-none-any.whl", big)
    _wheel(src, "dep-1.0-py3-none-any.whl", b"dep")
    store.add("0.2.0", [src], key=KEY, outbox_schema=1, min_rollback="0.1.0")
    settings = ApiSettings(database=tmp_path / "central.db", releases_dir=store.root)
    server = ApiServer(create_app(settings), "127.0.0.1", 0)
    server.start()
    try:
        yield Central(f"http://127.0.0.1:{server.bound_port}", store, server.bound_port)
    finally:
        server.stop()


def _box(tmp: Path) -> UpdaterSettings:
    prefix = tmp / "opt"
    fake_release(prefix, "0.1.0")
    point_current(prefix, "0.1.0")
    return UpdaterSettings(
        prefix=prefix, state_path=tmp / "var" / "state.json", downloads=tmp / "var" / "dl"
    )


def test_a_published_release_is_signed_and_immutable(central: Central, tmp_path: Path) -> None:
    rel = central.store.get("0.2.0", KEY.public_key())
    assert rel.manifest.outbox_schema == 1 and len(rel.manifest.files) == 2
    with pytest.raises(ReleaseError, match="published already"):
        central.store.add(
            "0.2.0", [tmp_path / "src"], key=KEY, outbox_schema=1, min_rollback="0.1.0"
        )
    with pytest.raises(ReleaseError, match=r"aps_kiosk-0.3.0"):
        central.store.add(
            "0.3.0", [tmp_path / "src"], key=KEY, outbox_schema=1, min_rollback="0.1.0"
        )
    assert central.store.versions() == ["0.2.0"]


def test_files_are_served_with_range(central: Central) -> None:
    base = f"{central.url}/v1/releases/0.2.0/files/aps_kiosk-0.2.0-py3-none-any.whl"
    full = httpx.get(base)
    assert full.status_code == 200
    part = httpx.get(base, headers={"Range": "bytes=100-"})
    assert part.status_code == 206 and part.content == full.content[100:]
    assert part.headers["content-range"] == f"bytes 100-{len(full.content) - 1}/{len(full.content)}"
    assert httpx.get(base, headers={"Range": f"bytes={len(full.content)}-"}).status_code == 416
    assert httpx.get(f"{central.url}/v1/releases/0.2.0/files/..%2Fmanifest.json").status_code == 404
    assert httpx.get(f"{central.url}/v1/releases/9.9.9/manifest.json").status_code == 404


def test_a_truncated_download_keeps_its_part_and_resumes(central: Central, tmp_path: Path) -> None:
    manifest = parse_manifest(central.store.manifest_bytes("0.2.0"), KEYS)
    entry = next(f for f in manifest.files if f.name.startswith("aps_kiosk"))
    path = f"/v1/releases/0.2.0/files/{entry.name}"
    into = tmp_path / "dl"
    proxy = TcpProxy(central.port)
    try:
        # a client that gives up after a few chunks stands in for a link that drops
        class Cut(httpx.HTTPTransport):
            def handle_request(self, request: httpx.Request) -> httpx.Response:
                resp = super().handle_request(request)
                inner = resp.stream

                class Stream(httpx.SyncByteStream):
                    def __iter__(self) -> Iterator[bytes]:
                        sent = 0
                        for chunk in inner:  # type: ignore[union-attr]
                            yield chunk
                            sent += len(chunk)
                            if sent > 300_000:
                                raise httpx.ReadError("link lost")

                return httpx.Response(resp.status_code, headers=resp.headers, stream=Stream())

        with (
            httpx.Client(transport=Cut()) as cut,
            pytest.raises(UpdateError, match="kept, resumed next time"),
        ):
            fetch_file(cut, f"http://127.0.0.1:{proxy.port}{path}", entry, into)
        kept = (into / f"{entry.name}.part").stat().st_size
        assert 0 < kept < entry.size
        seen: list[str | None] = []

        def log_range(request: httpx.Request) -> None:
            seen.append(request.headers.get("range"))

        with httpx.Client(event_hooks={"request": [log_range]}) as client:
            final = fetch_file(client, f"http://127.0.0.1:{proxy.port}{path}", entry, into)
        assert seen == [f"bytes={kept}-"]  # resumed, not fetched again
        assert hashlib.sha256(final.read_bytes()).hexdigest() == entry.sha256
    finally:
        proxy.close()


def test_a_wrong_hash_deletes_the_part_and_fails(central: Central, tmp_path: Path) -> None:
    manifest = parse_manifest(central.store.manifest_bytes("0.2.0"), KEYS)
    entry = manifest.files[0]
    lying = FileEntry(name=entry.name, sha256="0" * 64, size=entry.size)
    with httpx.Client() as client, pytest.raises(UpdateError, match="is not the manifest's"):
        fetch_file(client, f"{central.url}/v1/releases/0.2.0/files/{entry.name}", lying, tmp_path)
    assert not list(tmp_path.glob("*.part")) and not (tmp_path / entry.name).exists()


def test_apply_refuses_a_manifest_not_signed_by_central(central: Central, tmp_path: Path) -> None:
    box = _box(tmp_path)
    other = Ed25519PrivateKey.generate()
    with httpx.Client() as client, pytest.raises(UpdateError, match=r"verifying: .*sig"):
        apply_update(
            f"{central.url}/v1/releases/0.2.0/manifest.json",
            settings=box,
            keys={key_id(other.public_key()): other.public_key()},
            client=client,
        )
    assert box.layout.running_version() == "0.1.0"
    assert state_file.load(box.state_path).state is State.IDLE  # never began


def test_apply_fails_on_a_tampered_file_and_never_switches(
    central: Central, tmp_path: Path
) -> None:
    box = _box(tmp_path)
    f = central.store.file_path("0.2.0", "dep-1.0-py3-none-any.whl")
    f.write_bytes(f.read_bytes()[:-1] + b"X")  # the same size, other bytes
    with httpx.Client() as client:
        done = apply_update(
            f"{central.url}/v1/releases/0.2.0/manifest.json", settings=box, keys=KEYS, client=client
        )
    assert done.state.state is State.FAILED and not done.restart
    assert "dep-1.0-py3-none-any.whl: sha256" in (done.state.reason or "")
    assert box.layout.running_version() == "0.1.0"


def test_an_outbox_schema_the_running_release_cannot_read_is_refused() -> None:
    m = Manifest(
        version="0.3.0",
        created="2026-12-02T00:00:00Z",
        outbox_schema=2,
        min_rollback="0.1.0",
        files=(FileEntry(name="a-1-py3-none-any.whl", sha256="0" * 64, size=1),),
    )
    with pytest.raises(UpdateError, match=r"outbox schema 2.*cannot read back"):
        check_compatible(m, "0.2.0")
    ok = Manifest(**{**m.__dict__, "outbox_schema": 1, "min_rollback": "0.2.5"})
    with pytest.raises(UpdateError, match=r"roll back to 0.2.5 or newer"):
        check_compatible(ok, "0.2.0")
    check_compatible(Manifest(**{**ok.__dict__, "min_rollback": "0.2.0"}), "0.2.0")


def test_the_outbox_refuses_to_open_a_schema_it_cannot_read(tmp_path: Path) -> None:
    from sync.outbox import Outbox, OutboxError

    db = tmp_path / "kiosk.db"
    Outbox(db, kiosk="k1").close()
    import sqlite3

    conn = sqlite3.connect(db)
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(OutboxError, match=r"outbox schema '2'.*reads \[1\]"):
        Outbox(db, kiosk="k1")


def _signed(obj: dict) -> bytes:
    return json.dumps(sign("aps-release-v1", obj, KEY)).encode()


GOOD = {
    "v": 1,
    "type": "release",
    "version": "0.2.0",
    "created": "2026-12-02T00:00:00Z",
    "outbox_schema": 1,
    "min_rollback": "0.1.0",
    "files": [{"name": "a-1-py3-none-any.whl", "sha256": "a" * 64, "size": 3}],
}


def test_a_manifest_signed_in_another_domain_is_refused() -> None:
    parse_manifest(_signed(GOOD), KEYS)
    other = json.dumps(sign("aps-downlink-v1", GOOD, KEY)).encode()
    with pytest.raises(ManifestError) as err:
        parse_manifest(other, KEYS)
    assert err.value.field == "sig"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"version": "0.2"}, None),
        ({"version": "latest"}, "version"),
        ({"min_rollback": "0.3.0"}, "min_rollback"),
        ({"outbox_schema": 0}, "outbox_schema"),
        ({"files": []}, "files"),
        ({"files": [{"name": "../x.whl", "sha256": "a" * 64, "size": 3}]}, "files[0].name"),
        ({"files": [{"name": "x.whl", "sha256": "A" * 64, "size": 3}]}, "files[0].sha256"),
        ({"files": [{"name": "x.whl", "sha256": "a" * 64, "size": 0}]}, "files[0].size"),
        ({"v": 2}, "v"),
    ],
)
def test_each_bad_field_is_named(change: dict, field: str | None) -> None:
    obj = {**GOOD, **change}
    if field is None:
        check_fields(obj)
        return
    with pytest.raises(ManifestError) as err:
        parse_manifest(_signed(obj), KEYS)
    assert err.value.field == field


@given(st.binary(max_size=600))
def test_garbage_is_a_manifest_error_never_a_crash(raw: bytes) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(raw, KEYS)


@given(
    st.lists(st.integers(0, 99), min_size=2, max_size=4),
    st.lists(st.integers(0, 99), min_size=2, max_size=4),
)
def test_versions_compare_number_by_number(a: list[int], b: list[int]) -> None:
    va, vb = ".".join(map(str, a)), ".".join(map(str, b))
    width = max(len(a), len(b))
    ta, tb = a + [0] * (width - len(a)), b + [0] * (width - len(b))
    assert compare_versions(va, vb) == (ta > tb) - (ta < tb)
