"""The bench's dossier codes: national-format, and never the same for two bench kiosks."""

from __future__ import annotations

from bench._kiosks import dossier_record, kiosk_names
from sync.ids import new_stream_id
from sync.schemas import DOSSIER_CODE_RE


def test_bench_kiosks_file_valid_codes_of_their_own() -> None:
    stream = new_stream_id()
    seqs = (1, 9_999, 10_000, 10_001, 200_000)  # past a day's 10,000: the next day's codes
    codes = [
        str(dossier_record(kiosk, stream, seq).body["code"])
        for kiosk in [*kiosk_names(3), "bench-" + "k" * 57]
        for seq in seqs
    ]
    assert all(DOSSIER_CODE_RE.match(code) for code in codes), codes
    assert len(set(codes)) == len(codes), codes
