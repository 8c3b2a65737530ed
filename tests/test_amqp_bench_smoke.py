"""bench/amqp_ingest.py runs at a tiny size on its own 3-node cluster and prints its JSON.

No timing is asserted; what is: the last line's shape, every record held by central, the
collectors' queue empty afterwards (every delivery acked after its commit).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import rabbit_cluster

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_amqp_ingest_bench_runs_and_every_record_arrives(tmp_path: Path) -> None:
    assert rabbit_cluster.available(), "rabbitmq-server missing: apt-get install -y rabbitmq-server"
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench/amqp_ingest.py"),
            "--kiosks",
            "4",
            "--records",
            "400",
            "--dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    ).stdout
    last = json.loads(out.strip().splitlines()[-1])
    assert {"bench", "value", "unit", "baseline", "ratio"} <= set(last)
    assert last["bench"] == "amqp_ingest" and last["unit"] == "records/s"
    assert last["broker"] == "rabbitmq" and last["store"] == "sqlite"
    assert last["value"] > 0 and last["baseline"] > 0
    assert last["ratio"] == pytest.approx(last["value"] / last["baseline"], rel=0.01)
    assert last["records"] == last["held"] == 400
    assert last["left_in_queue"] == 0
