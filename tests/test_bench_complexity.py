"""`spiketandem bench complexity` on tiny sizes, and the CPU peak-memory meter against hand-counted bytes."""
import json

import torch

from spiketandem.bench.memory import LiveTensorBytes, peak_bytes
from spiketandem.cli import main


def test_meter_counts_new_storages_and_their_release():
    with LiveTensorBytes() as m:
        a = torch.ones(1000)          # 4000 bytes
        b = a * 2                     # 4000 more: peak 8000
        del a                         # freed
        c = b + 1                     # 4000: live 8000 again, peak still 8000
        d = torch.zeros(10, dtype=torch.float64)  # 80
    assert m.peak == 8080
    assert m.live == 8080
    del b, c, d
    assert m.live == 0


def test_meter_ignores_views_inplace_ops_and_older_tensors():
    old = torch.zeros(10_000)
    with LiveTensorBytes() as m:
        old.add_(1)                   # in place on a tensor made before the block
        view = old[:100]
        view.mul_(2)
        square = old.view(100, 100)
        small = torch.empty(3, dtype=torch.int64)  # 24 bytes: the only new storage
    assert m.peak == 24
    del view, square, small


def test_meter_sees_the_autograd_backward():
    w = torch.randn(64, 32, requires_grad=True)
    x = torch.randn(32, 16)
    with LiveTensorBytes() as m:
        (w @ x).relu().sum().backward()
    # at least the saved [64, 16] activation and the new [64, 32] gradient were alive together
    assert m.peak >= 64 * 16 * 4 + 64 * 32 * 4
    assert peak_bytes(lambda: torch.ones(256), "cpu") == 1024


def test_bench_complexity_rows_and_the_shape_of_table_2(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", "complexity", "--arch", "digits-cnn", "--image-size", "8", "--width", "0.25",
                 "--batch-size", "4", "--T", "2", "8", "--repeats", "1", "--out", str(out), "--json", "--quiet"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert json.loads((out / "complexity.json").read_text()) == result
    assert (out / "complexity.png").stat().st_size > 0
    rows = result["rows"]
    assert len(rows) == 5 * 2
    for row in rows:
        assert {"rule", "T", "depth", "peak_memory_bytes", "seconds_per_step"} <= set(row)
        assert row["depth"] == 3 and row["peak_memory_bytes"] > 0 and row["seconds_per_step"] > 0
    peak = {(r["rule"], r["T"]): r["peak_memory_bytes"] for r in rows}
    assert peak["ltl-online", 8] <= 1.1 * peak["ltl-online", 2]        # O(1) in T
    for rule in ("stbp", "ltl-offline", "ltl-offline-sequential"):     # O(T): 4x the window, > 2.5x the bytes
        assert peak[rule, 8] > 2.5 * peak[rule, 2]
    assert peak["ltl-offline-sequential", 8] < peak["ltl-offline", 8]


def test_bench_rejects_bad_sizes(tmp_path, capsys):
    code = main(["bench", "complexity", "--T", "0", "--out", str(tmp_path), "--quiet"])
    assert code == 2
    assert "must be positive" in capsys.readouterr().err
