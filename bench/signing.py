"""What signing every record costs: sign on the kiosk, verify at central, per record.

Per record, interleaved record by record over the same envelopes (docs/field-notes.md: blocks
of runs measure the machine, not the code):

- ``sign``: sync.envelope_signing.sign (canonical bytes + Ed25519) of a dossier envelope, as
  the kiosk would before publishing;
- ``verify``: sync.envelope_signing.verify of the signed envelope, as central would before
  ingest;
- baseline, same run: central's ingest of the same records (central.collector.process_batch
  on a SQLite store, synchronous=FULL, batches of 64; since issue 9 that ingest verifies each
  record itself, as the collector does), divided per record.

Run: ``PYTHONPATH=. python bench/signing.py``. Last line: {"bench", "value", "unit",
"baseline", "ratio"}: value = sign + verify µs per record (p50), baseline = ingest µs per
record, ratio = value / baseline.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bench._kiosks import dossier_record
from central.collector import process_batch
from central.fleet.keys import StaticKeyDirectory
from central.store import SQLiteStore
from sync.envelope import records_topic
from sync.envelope_signing import key_id, sign, verify
from sync.ids import new_stream_id
from sync.wire_signing import encode_signed, sign_record

BATCH = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=6400, help="records (multiple of 64)")
    args = parser.parse_args()
    n = max(BATCH, args.records // BATCH * BATCH)
    key = Ed25519PrivateKey.generate()
    keys = {key_id(key.public_key()): key.public_key()}
    directory = StaticKeyDirectory({"bench-sign": [key.public_key()], "warm": [key.public_key()]})
    central = {"keys": directory, "signing_key": Ed25519PrivateKey.generate()}
    kiosk = "bench-sign"
    topic = records_topic(kiosk)
    stream = new_stream_id()
    envelopes = [dossier_record(kiosk, stream, seq) for seq in range(1, n + 1)]
    as_dicts = [json.loads(r.encode()) for r in envelopes]
    sign_us: list[float] = []
    verify_us: list[float] = []
    ingest_us: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "central.db")
        # warm-up: the store's first commits and the key's first use
        warm = sign_record(dossier_record("warm", new_stream_id(), 1).encode(), key)
        process_batch(store, [(records_topic("warm"), warm)], **central)
        verify("aps-record-v1", sign("aps-record-v1", as_dicts[0], key), keys)
        for start in range(0, n, BATCH):
            batch = []
            for d in as_dicts[start : start + BATCH]:
                t0 = time.perf_counter()
                signed = sign("aps-record-v1", d, key)
                t1 = time.perf_counter()
                verify("aps-record-v1", signed, keys)
                t2 = time.perf_counter()
                sign_us.append((t1 - t0) * 1e6)
                verify_us.append((t2 - t1) * 1e6)
                batch.append((topic, encode_signed(signed)))
            t3 = time.perf_counter()
            result = process_batch(store, batch, **central)  # verifies each again
            ingest_us.append((time.perf_counter() - t3) * 1e6 / BATCH)
            if len(result.acks) == 0:
                raise SystemExit("central's ingest acknowledged nothing: the bench is broken")
        store.close()

    def p(xs: list[float], q: float) -> float:
        return sorted(xs)[min(len(xs) - 1, int(q * len(xs)))]

    rows = {"sign": sign_us, "verify": verify_us, "ingest per record": ingest_us}
    print(f"{n} dossier envelopes ({len(envelopes[0].encode())} bytes each), batches of {BATCH}")
    print(f"{'':20} {'p50 µs':>9} {'p99 µs':>9}")
    for name, xs in rows.items():
        print(f"{name:20} {statistics.median(xs):9.1f} {p(xs, 0.99):9.1f}")
    value = statistics.median(sign_us) + statistics.median(verify_us)
    baseline = statistics.median(ingest_us)
    print(
        json.dumps(
            {
                "bench": "signing",
                "value": round(value, 1),
                "unit": "µs per record (sign + verify, p50)",
                "baseline": round(baseline, 1),
                "ratio": round(value / baseline, 2),
                "sign_p50_us": round(statistics.median(sign_us), 1),
                "verify_p50_us": round(statistics.median(verify_us), 1),
            },
            ensure_ascii=False,
        )
    )


if __name__ == "__main__":
    main()
