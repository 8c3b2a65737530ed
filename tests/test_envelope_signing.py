"""Signed envelopes (sync.envelope_signing): canonical bytes, sign and verify, any change fails."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.envelope_signing import (
    EnvelopeSignatureError,
    canonical_bytes,
    key_id,
    sign,
    signed_bytes,
    verify,
)

KIOSK_KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()
KEYS = {key_id(KIOSK_KEY.public_key()): KIOSK_KEY.public_key()}

RECORD = {
    "v": 1,
    "kiosk": "sadec-p1-k01",
    "stream": "s-1",
    "seq": 42,
    "id": "01J9Z0",
    "kind": "dossier",
    "body": {"applicant": {"full_name": "Nguyễn Thị Ngọc Hường"}, "fee_vnd": 14000, "ok": True},
}

text = st.text(max_size=20)
leaf = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | text
json_values = st.recursive(
    leaf,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(text, kids, max_size=4),
    max_leaves=20,
)
envelopes = st.dictionaries(text.filter(lambda k: k != "sig"), json_values, max_size=6)


def test_the_canonical_form_is_sorted_compact_utf8_without_sig() -> None:
    out = canonical_bytes({"b": 1, "a": "Đà", "sig": {"x": 1}, "c": [True, None]})
    assert out == '{"a":"Đà","b":1,"c":[true,null]}'.encode()


@given(envelopes)
def test_key_order_and_an_old_sig_do_not_change_the_bytes(envelope: dict[str, Any]) -> None:
    reordered = dict(reversed(list(envelope.items())))
    assert canonical_bytes(envelope) == canonical_bytes({**reordered, "sig": "whatever"})
    # and the bytes are JSON that reads back as the envelope
    assert json.loads(canonical_bytes(envelope)) == envelope


@given(envelopes)
@settings(max_examples=200)
def test_sign_then_verify_round_trips_through_json(envelope: dict[str, Any]) -> None:
    signed = sign("aps-record-v1", envelope, KIOSK_KEY)
    wire = json.loads(json.dumps(signed, ensure_ascii=True))  # escapes on the wire are fine
    assert verify("aps-record-v1", wire, KEYS) == key_id(KIOSK_KEY.public_key())


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*path, i))
    return out


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if value is None:
        return 0
    if isinstance(value, list):
        return [*value, None]
    return {**value, "extra": 1}


@given(st.data())
@settings(max_examples=200)
def test_any_changed_value_fails(data: st.DataObject) -> None:
    envelope = data.draw(envelopes.filter(bool))
    signed = sign("aps-record-v1", envelope, KIOSK_KEY)
    path = data.draw(st.sampled_from([p for p in _paths(envelope) if p]))
    tampered = json.loads(json.dumps(signed))
    holder = tampered
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = _changed(holder[path[-1]])
    with pytest.raises(EnvelopeSignatureError) as info:
        verify("aps-record-v1", tampered, KEYS)
    assert info.value.reason == "mismatch"


@given(st.data())
def test_any_changed_byte_of_the_signed_bytes_fails(data: st.DataObject) -> None:
    message = signed_bytes("aps-record-v1", RECORD)
    signature = KIOSK_KEY.sign(message)
    i = data.draw(st.integers(0, len(message) - 1))
    flip = data.draw(st.integers(1, 255))
    changed = message[:i] + bytes([message[i] ^ flip]) + message[i + 1 :]
    with pytest.raises(InvalidSignature):
        KIOSK_KEY.public_key().verify(signature, changed)


def test_a_record_signature_is_not_an_ack() -> None:
    signed = sign("aps-record-v1", RECORD, KIOSK_KEY)
    with pytest.raises(EnvelopeSignatureError, match="mismatch"):
        verify("aps-ack-v1", signed, KEYS)


def test_another_key_unknown_keys_and_bad_sigs_are_refused_with_a_reason() -> None:
    by_other = sign("aps-record-v1", RECORD, OTHER_KEY)
    with pytest.raises(EnvelopeSignatureError) as info:
        verify("aps-record-v1", by_other, KEYS)
    assert info.value.reason == "unknown-key"
    # the other key's signature under the kiosk's key id: still refused
    forged = {**by_other, "sig": {**by_other["sig"], "kid": key_id(KIOSK_KEY.public_key())}}
    with pytest.raises(EnvelopeSignatureError) as info:
        verify("aps-record-v1", forged, KEYS)
    assert info.value.reason == "mismatch"
    # a registry holding a key under someone else's id
    wrong_registry = {key_id(KIOSK_KEY.public_key()): OTHER_KEY.public_key()}
    with pytest.raises(EnvelopeSignatureError, match="does not name the key"):
        verify("aps-record-v1", sign("aps-record-v1", RECORD, KIOSK_KEY), wrong_registry)
    good = sign("aps-record-v1", RECORD, KIOSK_KEY)
    for sig, reason in (
        (None, "unsigned"),
        ("text", "bad-sig"),
        ({**good["sig"], "alg": "rsa"}, "bad-sig"),
        ({**good["sig"], "value": "AAAA"}, "bad-sig"),
        ({**good["sig"], "value": "!" * 86}, "bad-sig"),
        ({**good["sig"], "extra": 1}, "bad-sig"),
    ):
        env = (
            {**good, "sig": sig}
            if sig is not None
            else {k: v for k, v in good.items() if k != "sig"}
        )
        with pytest.raises(EnvelopeSignatureError) as info:
            verify("aps-record-v1", env, KEYS)
        assert info.value.reason == reason, (sig, info.value)


def test_rotation_old_and_new_keys_both_verify_until_the_old_one_is_retired() -> None:
    new = Ed25519PrivateKey.generate()
    both = {**KEYS, key_id(new.public_key()): new.public_key()}
    assert verify("aps-record-v1", sign("aps-record-v1", RECORD, KIOSK_KEY), both)
    assert verify("aps-record-v1", sign("aps-record-v1", RECORD, new), both)
    retired = {key_id(new.public_key()): new.public_key()}
    with pytest.raises(EnvelopeSignatureError, match="unknown-key"):
        verify("aps-record-v1", sign("aps-record-v1", RECORD, KIOSK_KEY), retired)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"x": 1.5}, "float"),
        ({"x": float("nan")}, "float"),
        ({"x": {1: "a"}}, "not text"),
        ({"x": b"raw"}, "bytes is not JSON"),
        ({"x": "\ud800"}, "UTF-8"),
    ],
)
def test_what_has_no_single_spelling_is_refused(bad: dict[str, Any], match: str) -> None:
    with pytest.raises(EnvelopeSignatureError, match=match) as info:
        canonical_bytes(bad)
    assert info.value.reason == "not-canonical"


def test_nesting_is_bounded() -> None:
    deep: Any = 0
    for _ in range(40):
        deep = [deep]
    with pytest.raises(EnvelopeSignatureError, match="nested deeper"):
        canonical_bytes({"x": deep})


_ANYTHING = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=3) | st.integers(), inner, max_size=4)
    ),
    max_leaves=40,
)


def _nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


@given(value=_ANYTHING | st.integers(14, 18).map(lambda d: _nested(d, 1)))
@settings(max_examples=400)
def test_the_fast_walk_refuses_exactly_what_the_naming_walk_refuses(value: Any) -> None:
    from sync.envelope_signing import _acceptable, _check

    try:
        _check(value, 0, "envelope")
    except EnvelopeSignatureError:
        named = False
    else:
        named = True
    assert _acceptable(value) is named
