"""`benchmarks/pipelining.py`: every mode runs and the cost model covers the asked stage counts (slow)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import spiketandem

SCRIPT = Path(__file__).resolve().parent / "pipelining.py"
SRC = str(Path(spiketandem.__file__).resolve().parents[1])
TIMEOUT = 1800


@pytest.mark.slow
def test_bench_pipeline_runs(tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run([sys.executable, str(SCRIPT), "--arch", "vgg11", "--width",
                           "0.125", "--T", "2", "--batch-size", "8", "--batches", "4", "--epochs", "1",
                           "--model-stages", "2", "4", "--repeats", "1", "--device", "cpu", "--quiet", "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "pipeline.json").read_text())
    assert {r["mode"] for r in result["rows"]} == {"single-1t", "single-2t", "pipeline", "data-parallel", "side-by-side"}
    assert set(result["speedups"]) == {"a_vs_1_process_1_thread", "b_vs_1_process_2_threads", "c_vs_data_parallel",
                                       "machine_ceiling"}
    pipelined = next(r for r in result["rows"] if r["mode"] == "pipeline")
    assert len(pipelined["stages"]) == 2 and 0 <= pipelined["bubble_fraction"] < 1
    assert {row["stages"] for row in result["model"]["rows"]} == {2, 4}


def test_cost_model_is_bounded_by_the_largest_stage():
    from argparse import Namespace
    from pipelining import cost_model
    measured = {"layers": ["a", "b", "c", "d"], "batch": 10, "layer_cost": [1.0, 1.0, 1.0, 1.0],
                "partitions": [{"stages": 2, "stage_of": [0, 0, 1, 1], "spike_bytes": [1000], "teacher_bytes": [4000],
                                "teacher_prefix": [0.0, 0.2], "stage_cost": [2.0, 2.0]},
                               {"stages": 4, "stage_of": [0, 1, 2, 3], "spike_bytes": [1000] * 3,
                                "teacher_bytes": [4000] * 3, "teacher_prefix": [0.0, 0.1, 0.2, 0.3],
                                "stage_cost": [1.0] * 4}]}
    for part in measured["partitions"]:
        part["stage_param_bytes"] = [4000] * part["stages"]
    rows = cost_model(measured, Namespace(gpu_speedup=[100.0], model_replicas=[1, 2]))["rows"]
    assert {(r["stages"], r["replicas"]) for r in rows} == {(2, 1), (2, 2), (4, 1), (4, 2)}
    for row in rows:
        assert row["speedup"] <= row["speedup_overlapped"] <= row["gpus"] + 1e-9
        assert row["speedup"] > 0.9 * row["gpus"]  # a few kB per batch of 10 ms is nothing on either link
