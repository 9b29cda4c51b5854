"""The memory plan of `train` (``memory.py``): its counter and model against hand computations, the refusal of a
run that cannot fit (one line, before any work), and the plan against the measured peak of real runs."""
import json
import subprocess
import sys

import pytest
import torch

from spiketandem.cli import main
from spiketandem.memory import LinearMemory, LiveTensorBytes, _largest
from spiketandem.rules import CATALOG


def test_live_bytes_count_each_storage_once_from_allocation_to_release():
    with LiveTensorBytes() as live:
        a = torch.ones(1000)          # 4000 bytes alive
        b = a + 1                     # 8000
        view = b.view(10, 100)        # a view of b's storage: no new bytes
        del a                         # 4000
        c = b * 2                     # 8000 again, never more
        assert live.live == 8000
        del b, c, view
        assert live.live == 0
    assert live.peak == 8000


def test_the_linear_model_recovers_fixed_per_sample_and_per_step_bytes():
    # P(B, T) = 100 + B (7 + 3 (T - 2)) measured at the probes' (4, 2), (8, 2), (4, 4)
    model = LinearMemory.fit(lambda b, T: 100 + b * (7 + 3 * (T - 2)), (2, 4))
    assert (model.fixed, model.per_sample, model.per_step, model.T1) == (100, 7, 3, 2)
    assert model(64, 100) == 100 + 64 * (7 + 3 * 98)
    assert LinearMemory.fit(lambda b, T: 50 + 5 * b, (3,)).per_step == 0  # one window: nothing grows with T


def test_largest_finds_the_last_fitting_value():
    assert _largest(lambda n: n <= 37, 100) == 37
    assert _largest(lambda n: n <= 0, 100) == 0 and _largest(lambda n: True, 5) == 5


def test_a_run_that_cannot_fit_is_refused_in_one_line_before_any_work(tmp_path, capsys, digits_teacher):
    out = tmp_path / "run"
    assert main(["train", "--teacher", digits_teacher, "--T", "100000", "--epochs", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "this run needs about" in err and "GiB is available; what would fit: --T " in err
    assert not out.exists()  # refused before the run folder was touched


RUNS = {  # settings where the tensors, not the interpreter, make most of the peak
    "ltl-offline T=64": ["--T", "64", "--batch-size", "256", "--eval-T", "64"],
    "ltl-online T=16": ["--rule", "ltl-online", "--T", "16", "--batch-size", "128", "--eval-T", "16"],
    "ltl-offline resnet20 T=8": ["--arch", "resnet20", "--width", "0.5", "--T", "8", "--batch-size", "128",
                                 "--eval-T", "8", "16"],
    "stbp mlp T=32": ["--arch", "digits-mlp", "--rule", "stbp", "--T", "32", "--batch-size", "256", "--eval-T", "32"],
}


@pytest.mark.parametrize("name", list(RUNS))
def test_the_planned_peak_is_within_a_quarter_of_the_measured_one(name, tmp_path, digits_teacher):
    """Each run in a fresh process, as `spiketandem train` runs: the peak is the process's."""
    teacher = [] if "--arch" in RUNS[name] else ["--teacher", digits_teacher]
    out = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "spiketandem", "train", "--dataset", "digits", "--epochs", "1",
                    "--n-train", "512", "--teacher-epochs", "1", "--quiet", "--out", str(out), *teacher, *RUNS[name]],
                   check=True, capture_output=True)
    summary = json.loads((out / "summary.json").read_text())
    ratio = summary["memory_planned_bytes"] / summary["peak_memory_bytes"]
    assert 0.75 <= ratio <= 1.25, (name, summary["memory_planned_bytes"], summary["peak_memory_bytes"])


@pytest.mark.parametrize("rule", [name for name in CATALOG if name != "ann"])
def test_every_rule_can_be_planned(rule):
    """The probes run for every rule (check_memory would otherwise let the run go unplanned, saying why)."""
    from spiketandem.config import make_config
    from spiketandem.rules import configure, get_rule
    from spiketandem.workflow import _probe_teacher, evaluate_run_objects, prepare
    from spiketandem.memory import plan_memory
    fields = {"dataset": "digits", "arch": "digits-cnn", "rule": rule, "neuron": "if", "T": 8, "eval_T": [8],
              "batch_size": 32, **dict(CATALOG[rule].fixed)}
    cfg, data, info, device = prepare(configure(make_config(fields)))
    rule_cls = get_rule(rule)
    teacher = _probe_teacher(cfg, info, rule_cls, device)
    plan = plan_memory(cfg, rule_cls, info, data, teacher, device, lambda r, subset, T: evaluate_run_objects(
        cfg.replace(T=T, eval_T=[T]), r, teacher, subset, device, None, 0.0))
    assert plan.peak >= plan.resident > 0 and plan.tensors() > 0
    assert (plan.train.per_sample > 0) == (cfg.epochs > 0)  # a training step keeps something per sample
