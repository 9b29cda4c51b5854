"""`spiketandem bench neuron` at a tiny size: ours always runs; each installed peer reproduces our spikes
(and, with the same surrogate and reset gradient, our input gradient) before it is timed; a peer that is
not installed is skipped with its reason."""
import json

import pytest

from spiketandem.bench import neuron as bench
from spiketandem.cli import main


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    args = ["bench", "neuron", "--T", "12", "--linear-T", "6", "--n", "96", "--linear-n", "24", "--batch-size", "2",
            "--repeats", "1", "--warmup", "0", "--device", "cpu", "--out", str(out), "--quiet"]
    assert main(args) in (0, None)
    return json.loads((out / "neuron.json").read_text())


def test_ours_runs_and_ratios_are_reported(result):
    rows = {(r["setup"], r["implementation"]): r for r in result["rows"]}
    for setup in ("neuron", "linear"):
        for name in ("spiketandem-fused", "spiketandem-fused-boxcar", "spiketandem-reference"):
            row = rows[(setup, name)]
            assert row["seconds"] > 0 and row["peak_memory_bytes"] > 0
            assert row["spike_agreement"] == 1.0 and 0 < row["firing_rate"] < 1
    assert rows[("neuron", "spiketandem-fused")]["input_grad_max_rel_err"] < 1e-5
    # the fused kernel keeps less than the reference: U (4 B) instead of the per-step graph
    fused, reference = rows[("neuron", "spiketandem-fused")], rows[("neuron", "spiketandem-reference")]
    assert fused["peak_memory_bytes"] < reference["peak_memory_bytes"]
    assert set(result["ratios"]) == {"neuron@T12", "linear@T6"}
    assert "spiketandem-reference" in result["ratios"]["neuron@T12"]


@pytest.mark.parametrize("peer", bench.FRAMEWORKS)
def test_installed_peer_reproduces_our_dynamics(result, peer):
    if peer in result["skipped"]:
        pytest.skip(f"{peer}: {result['skipped'][peer]}")
    mine = [r for r in result["rows"] if r["framework"] == peer]
    assert {r["setup"] for r in mine} == {"neuron", "linear"}
    for r in mine:
        assert r["spike_agreement"] >= 0.999, r
        if "input_grad_max_rel_err" in r:       # same surrogate and reset gradient as ours
            assert r["input_grad_max_rel_err"] < 1e-4, r


def test_missing_peer_is_skipped_with_its_reason(monkeypatch):
    monkeypatch.setattr(bench.importlib.util, "find_spec", lambda name: None)
    impls, skipped = bench.peer_impls(["norse"])
    assert impls == [] and "pip install" in skipped["norse"]
