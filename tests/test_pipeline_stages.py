"""Layer-pipelined LTL (``--pipeline-stages``, ``spiketandem/pipelining/``).

Fast: the graph cut reproduces the student and the teacher segment by segment (VGG, and a ResNet whose
residual skips put two tensors across a cut); the messages round-trip; the balance and the teacher's route
follow the costs; every rule that cannot pipeline, a launch without torchrun and too many stages are
refused with a message saying why; and 2 stages under the real launcher (gloo) train the single process's
weights on digits exactly.

Slow: online LTL (per batch and per step), --ynorm running and fixed, 3 stages (a relay through the middle stage), stages x data-parallel
replicas, --resume (into a single process too), a wrong process count, CIFAR-10 subsets (VGG-11 and the
residual ResNet-20), and the benchmark.
"""
import json
import subprocess
from pathlib import Path

import pytest
import torch

from launch import torchrun
from spiketandem.cli import main
from spiketandem.config import make_config
from spiketandem.errors import SpiketandemError
from spiketandem.models import build_model
from spiketandem.neuron import NeuronConfig, RunContext
from spiketandem.pipelining.graph import cut_student, cut_teacher
from spiketandem.pipelining.messages import Encoded, Link, Slot, pack_bits, unpack_bits
from spiketandem.pipelining.plan import balance, placeholder_name, teacher_modes
from spiketandem.rules import CATALOG, configure
from spiketandem.runs import RunFolder
from spiketandem.student import TeacherTaps, build_student

# 128 training images = 4 batches of 32; no randomness inside a step (analog input, no dropout in digits-cnn)
DIGITS = ["train", "--dataset", "digits", "--arch", "digits-cnn", "--n-train", "128", "--n-test", "64", "--epochs", "2",
          "--batch-size", "32", "--T", "4", "--eval-T", "4", "--device", "cpu", "--quiet", "--seed", "3"]


def _weights(run: Path) -> dict:
    obj = torch.load(run / "student.pt", map_location="cpu", weights_only=True)
    return {k: v for k, v in obj["state"]["model"].items() if v.is_floating_point()}


def max_difference(a: Path, b: Path) -> float:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


def assert_same_metrics(a: Path, b: Path, tol: float = 1e-5) -> None:
    rows_a, rows_b = RunFolder(a).read_metrics(), RunFolder(b).read_metrics()
    assert len(rows_a) == len(rows_b) >= 1
    for ra, rb in zip(rows_a, rows_b):
        for key in ("train_loss", "train_acc", "test_acc", "ce", "local"):
            assert ra[key] == pytest.approx(rb[key], abs=tol), key
    sa, sb = (json.loads((p / "summary.json").read_text()) for p in (a, b))
    assert sa["student_acc"] == sb["student_acc"]
    assert sa["acc_by_T"] == sb["acc_by_T"]


def _pipelined_and_single(tmp_path: Path, flags: list[str], nproc: int = 2) -> tuple[Path, Path, subprocess.CompletedProcess]:
    done = torchrun(flags + ["--out", str(tmp_path / "pipelined")], nproc)
    assert done.returncode == 0, done.stderr[-4000:]
    single = [f for f in flags]
    if "--pipeline-stages" in single:
        i = single.index("--pipeline-stages")
        del single[i:i + 2]
    assert main(single + ["--out", str(tmp_path / "single")]) == 0
    return tmp_path / "pipelined", tmp_path / "single", done


# ---- the graph cut --------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch, channels, size, stages", [
    ("digits-cnn", 1, 8, 3), ("vgg11", 3, 32, 2), ("vgg11", 3, 32, 4), ("resnet20", 3, 32, 3)])
def test_segments_chained_are_the_student_and_the_teacher(arch, channels, size, stages):
    torch.manual_seed(0)
    teacher = build_model(arch, 10, channels, size, 1.0 if arch == "digits-cnn" else 0.25).eval()
    x = torch.randn(3, channels, size, size)
    student = build_student(teacher, NeuronConfig(), x)
    taps = TeacherTaps(teacher, x)
    names = [info.name for info in student.layers]
    stage_of = dict(zip(names, balance([1.0] * len(names), stages)))
    scut, tcut = cut_student(student, stage_of, stages), cut_teacher(taps, stage_of, stages)
    T = 3
    whole = RunContext(T=T, batch=3, records={})
    logits = student.run(x, whole)
    values, records = {placeholder_name(student.graph_module): student.encode(x, T)}, {}
    for segment in scut.segments:
        ctx = RunContext(T=T, batch=3, records={})
        segment.run(values, ctx)
        records.update(ctx.records)
    assert torch.equal(values[scut.segments[-1].outputs[-1]].reshape(T, 3, -1), logits)
    assert all(torch.equal(records[n], whole.records[n]) for n in names)
    teacher_logits, acts = taps(x)
    tvalues = {placeholder_name(taps.graph_module): x}
    for segment in tcut.segments:
        segment.run(tvalues)
    assert torch.equal(tvalues[tcut.logits], teacher_logits)
    assert all(torch.equal(tvalues[tcut.taps[n]], acts[n]) for n in names)
    if arch == "resnet20":  # a residual block cut in the middle: its input (the skip) crosses too
        assert max(len(c) for c in scut.crossing) == 2
    else:
        assert all(len(c) == 1 for c in scut.crossing)


def test_a_weight_whose_gradient_would_cross_a_cut_is_refused():
    from torch import nn

    class Shared(nn.Module):  # conv1's output feeds the first ReLU and, past it, the second layer's sum
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Linear(256, 3)

        def forward(self, x):
            a = self.conv1(x)
            return self.fc(torch.relu(self.conv2(torch.relu(a)) + a).flatten(1))

    x = torch.randn(2, 1, 8, 8)
    student = build_student(Shared().eval(), NeuronConfig(), x)
    names = [info.name for info in student.layers]
    with pytest.raises(SpiketandemError, match="crosses the cut with a gradient"):
        cut_student(student, {names[0]: 0, names[1]: 1}, 2)


# ---- messages, balance, teacher route ------------------------------------------------------------------

def test_bits_round_trip():
    spikes = (torch.rand(5, 3, 7) > 0.6).float()
    packed = pack_bits(spikes)
    assert packed.dtype == torch.uint8 and packed.numel() % 8 == 0 and packed.numel() * 8 >= spikes.numel()
    assert torch.equal(unpack_bits(packed, spikes.numel(), torch.float32).view_as(spikes), spikes)


def test_a_message_rebuilds_what_the_next_layer_reads_and_relays_unchanged():
    T, B = 4, 3
    slots = [Slot("neurons_a", "spikes", T, (2, 5), "student", "a"), Slot("skip", "tensor", T, (6,), "student"),
             Slot("tap", "tensor", 1, (2, 5), "teacher")]
    link = Link(slots)
    spikes = (torch.rand(T, B, 2, 5) > 0.5).float()
    amplitude = torch.tensor(0.37)
    skip = torch.randn(T * B, 6).bfloat16()
    tap = torch.rand(B, 2, 5)
    message = link.encode(B, {"student:neurons_a": (spikes, amplitude), "student:skip": skip, "teacher:tap": tap},
                          "cpu")
    assert message.numel() == link.nbytes(B)
    values, raw = link.decode(message, B, T)
    assert torch.equal(values["student:neurons_a"], (spikes * amplitude).flatten(0, 1))
    assert values["student:skip"].dtype == torch.bfloat16 and torch.equal(values["student:skip"], skip)
    assert torch.equal(values["teacher:tap"], tap)
    assert all(isinstance(r, Encoded) for r in raw.values())
    assert torch.equal(link.encode(B, raw, "cpu"), message)  # relayed bytes are the bytes that came
    # spikes: 1 bit each (+ the amplitude), against 4 bytes for a float
    assert Slot("s", "spikes", T, (64,)).nbytes(B) * 32 <= Slot("t", "tensor", T, (64,)).nbytes(B) + 64


def test_balance_minimises_the_slowest_stage_and_keeps_layers_in_order():
    assert balance([1, 1, 1, 1], 2) == [0, 0, 1, 1]
    assert balance([4, 1, 1, 1, 1], 2) == [0, 1, 1, 1, 1]
    assert balance([1, 2, 3, 4, 5], 3) == [0, 0, 0, 1, 2]  # sums 6, 4, 5 (max 6 is optimal)
    assert balance([3, 3, 3], 3) == [0, 1, 2]


def test_teacher_route_is_the_cheaper_one():
    # stage 1's teacher prefix costs 1 s; relaying its boundary costs bytes x seconds per byte
    assert teacher_modes([0, 1], [1.0, 1.0], [1000], 1e-4) == ["first", "relay"]       # 0.1 s < 1 s
    assert teacher_modes([0, 1], [1.0, 1.0], [1000], 1e-2) == ["first", "recompute"]   # 10 s > 1 s
    assert teacher_modes([0, 0, 1, 2], [0.1, 0.1, 5.0, 1.0], [10, 10], 0.03) == ["first", "recompute", "relay"]


# ---- refusals ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule", [name for name in CATALOG if name not in ("ltl-offline", "ltl-online")])
def test_every_rule_that_cannot_pipeline_says_why(rule):
    fixed = dict(CATALOG[rule].fixed)  # the settings the rule only runs with (conversion: IF neurons, no epochs)
    with pytest.raises(SpiketandemError, match=f"--pipeline-stages 2: rule {rule} cannot train as pipelined") as e:
        configure(make_config({"rule": rule, "pipeline_stages": 2, **fixed}))
    assert CATALOG[rule].no_pipeline in str(e.value)
    configure(make_config({"rule": rule, "pipeline_stages": 1, **fixed}))  # 1 stage: no pipelining, always fine


def test_end_to_end_rules_are_refused_on_the_command_line_before_any_work(capsys):
    assert main(["train", "--rule", "stbp", "--pipeline-stages", "2", "--dataset", "digits", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "rule stbp cannot train as pipelined layer stages" in err and "loss is global" in err


@pytest.mark.parametrize("value", [0, -1, 1.5, "2", True])
def test_pipeline_stages_must_be_a_positive_integer(value):
    with pytest.raises(SpiketandemError, match="config field 'pipeline_stages' must be a positive integer"):
        make_config({"pipeline_stages": value})


def test_pipeline_stages_without_torchrun_is_refused_before_a_teacher_is_trained(tmp_path, capsys):
    assert main(DIGITS + ["--pipeline-stages", "2", "--out", str(tmp_path / "run"), "--teacher-epochs", "1"]) == 2
    assert "launch with `torchrun --nproc_per_node=2" in capsys.readouterr().err
    assert not (tmp_path / "run" / "teacher" / "teacher.pt").exists()


def test_more_stages_than_neuron_layers_is_refused(digits_teacher):
    from spiketandem.pipelining import wrap
    from spiketandem.teachers import load_teacher
    from spiketandem.rules import get_rule
    from spiketandem.rules.base import DataInfo
    info = DataInfo(10, 1, 8)
    teacher, _ = load_teacher(digits_teacher, info)
    cfg = configure(make_config({"arch": "digits-cnn", "pipeline_stages": 4}))
    rule = get_rule("ltl-offline")(cfg, info, teacher, torch.zeros(4, 1, 8, 8))
    with pytest.raises(SpiketandemError, match="only 3 neuron layers"):
        wrap(rule, cfg)
    from spiketandem.pipelining.rule import Pipelined
    with pytest.raises(SpiketandemError, match="cannot be pipelined"):
        Pipelined(get_rule("stbp")(cfg.replace(rule="stbp"), info, None, torch.zeros(4, 1, 8, 8)), 2)


def test_online_ltl_pipelines_but_not_with_the_on_chip_gate():
    configure(make_config({"rule": "ltl-online", "pipeline_stages": 2}))
    with pytest.raises(SpiketandemError, match="--onchip-gate .* with --pipeline-stages"):
        configure(make_config({"rule": "ltl-online", "pipeline_stages": 2, "onchip_gate": True}))


# ---- exactness under the real launcher ------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory, digits_teacher):
    """2 stages under torchrun (gloo) and one process, same teacher and flags."""
    root = tmp_path_factory.mktemp("pipeline-digits")
    return _pipelined_and_single(root, DIGITS + ["--teacher", digits_teacher, "--pipeline-stages", "2"])


def test_two_stages_train_the_single_process_weights(digits_runs):
    pipelined, single, _ = digits_runs
    assert max_difference(pipelined, single) <= 1e-5
    assert_same_metrics(pipelined, single)


def test_a_pipelined_run_reports_its_stages(digits_runs):
    pipelined, _, done = digits_runs
    summary = json.loads((pipelined / "summary.json").read_text())
    report = summary["pipeline"]
    assert report["stages"] == 2 and report["replicas"] == 1
    assert [n for stage in report["layers"] for n in stage] == ["relu", "relu_1", "relu_2"]
    assert report["teacher"][0] == "first" and report["teacher"][1] in ("relay", "recompute")
    ranks = {r["rank"]: r for r in report["per_rank"]}
    assert ranks[0]["bytes_sent_per_sample"] > 0 and ranks[1]["bytes_sent_per_sample"] == 0
    assert all(r["busy_seconds"] > 0 for r in ranks.values())
    rows = RunFolder(pipelined).read_metrics()
    assert all(0 <= r["pipeline_bubble"] < 1 for r in rows)
    assert done.stdout.count("run folder:") == 1  # rank 0 reports, once
    config = RunFolder(pipelined).read_config()
    assert config["pipeline_stages"] == 2
    assert not list(pipelined.rglob(".*.tmp"))


@pytest.mark.slow
@pytest.mark.parametrize("ynorm", ["running", "fixed"])
def test_ynorm_modes_are_exact_per_stage(tmp_path, digits_teacher, ynorm):
    pipelined, single, _ = _pipelined_and_single(
        tmp_path, DIGITS + ["--teacher", digits_teacher, "--pipeline-stages", "2", "--ynorm", ynorm])
    assert max_difference(pipelined, single) <= 1e-5
    assert_same_metrics(pipelined, single)
    if ynorm == "running":  # every layer's running y_norm, from whichever stage owned it, is in the model file
        scales = [torch.load(p / "student.pt", weights_only=True)["state"]["extra"]["targets"]["scales"]
                  for p in (pipelined, single)]
        assert scales[0].keys() == scales[1].keys() == {"relu", "relu_1", "relu_2"}
        assert all(scales[0][k] == pytest.approx(scales[1][k], rel=1e-6) for k in scales[0])


@pytest.mark.slow
@pytest.mark.parametrize("update", ["batch", "step"])
def test_online_ltl_pipelined_is_the_single_process(tmp_path, digits_teacher, update):
    """Online LTL: one update per batch, or one per time step after the warm-up (T = 4, warm-up 2 steps)."""
    pipelined, single, _ = _pipelined_and_single(
        tmp_path, DIGITS + ["--teacher", digits_teacher, "--pipeline-stages", "2", "--rule", "ltl-online",
                            "--online-update", update, "--online-warmup-steps", "2"])
    assert max_difference(pipelined, single) <= 1e-5
    assert_same_metrics(pipelined, single)


@pytest.mark.slow
def test_three_stages_relay_through_the_middle_one(tmp_path, digits_teacher):
    pipelined, single, _ = _pipelined_and_single(
        tmp_path, DIGITS + ["--teacher", digits_teacher, "--pipeline-stages", "3"], nproc=3)
    assert max_difference(pipelined, single) <= 1e-5
    assert_same_metrics(pipelined, single)


@pytest.mark.slow
def test_stages_times_data_parallel_replicas(tmp_path, digits_teacher):
    """4 processes = 2 stages x 2 replicas, each replica on half of every global batch: the single process's
    weights up to the order of floating-point sums (each replica's gradient is averaged within its stage)."""
    from test_distributed import assert_same_student
    pipelined, single, _ = _pipelined_and_single(
        tmp_path, DIGITS + ["--teacher", digits_teacher, "--pipeline-stages", "2"], nproc=4)
    assert_same_student(_weights(pipelined), _weights(single))
    assert json.loads((pipelined / "summary.json").read_text())["pipeline"]["replicas"] == 2
    assert_same_metrics(pipelined, single, tol=1e-4)


@pytest.mark.slow
def test_resume_a_pipelined_run_and_resume_it_in_one_process(tmp_path, digits_teacher):
    """A pipelined checkpoint is the whole run's: resumed pipelined, or in one process, epoch 2 continues as
    the uninterrupted single-process run."""
    import shutil
    flags = DIGITS + ["--teacher", digits_teacher]
    first = list(flags)
    first[first.index("--epochs") + 1] = "1"
    done = torchrun(first + ["--pipeline-stages", "2", "--out", str(tmp_path / "a")])
    assert done.returncode == 0, done.stderr[-4000:]
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    done = torchrun(flags + ["--pipeline-stages", "2", "--out", str(tmp_path / "a"), "--resume"])
    assert done.returncode == 0, done.stderr[-4000:]
    assert main(flags + ["--out", str(tmp_path / "b"), "--resume"]) == 0   # the same checkpoint, one process
    assert main(flags + ["--out", str(tmp_path / "whole")]) == 0
    for resumed in ("a", "b"):
        assert max_difference(tmp_path / resumed, tmp_path / "whole") <= 1e-5
        assert_same_metrics(tmp_path / resumed, tmp_path / "whole")


@pytest.mark.slow
def test_a_process_count_that_is_no_multiple_of_the_stages_is_refused(tmp_path, digits_teacher):
    done = torchrun(DIGITS + ["--teacher", digits_teacher, "--pipeline-stages", "2", "--out", str(tmp_path / "r")],
                     nproc=3)
    assert done.returncode != 0
    assert "needs a multiple of 2 processes" in done.stderr


@pytest.fixture(scope="module")
def cifar_teachers(tmp_path_factory):
    """One-epoch teachers on a 256-image CIFAR-10 subset (real CIFAR-10; skipped where it is not found)."""
    from spiketandem.data import load_dataset
    try:
        load_dataset("cifar10", None)
    except SpiketandemError as e:
        pytest.skip(f"CIFAR-10 not available: {e}")
    root = tmp_path_factory.mktemp("cifar-teachers")
    paths = {}
    for arch in ("vgg11", "resnet20"):
        assert main(["teacher", "--dataset", "cifar10", "--arch", arch, "--width", "0.25", "--n-train", "256",
                     "--n-test", "64", "--epochs", "1", "--batch-size", "64", "--device", "cpu", "--quiet",
                     "--out", str(root / arch)]) == 0
        paths[arch] = str(root / arch / "teacher.pt")
    return paths


@pytest.mark.slow
@pytest.mark.parametrize("arch, stages", [("vgg11", 2), ("resnet20", 3)])
def test_cifar10_subset_pipelined_is_the_single_process(tmp_path, cifar_teachers, arch, stages):
    flags = ["train", "--dataset", "cifar10", "--n-train", "128", "--n-test", "64", "--epochs", "2", "--batch-size",
             "32", "--T", "4", "--eval-T", "4", "--device", "cpu", "--quiet", "--seed", "1",
             "--teacher", cifar_teachers[arch], "--pipeline-stages", str(stages)]
    pipelined, single, _ = _pipelined_and_single(tmp_path, flags, nproc=stages)
    assert max_difference(pipelined, single) <= 1e-5
    assert_same_metrics(pipelined, single)


# ---- the benchmark --------------------------------------------------------------------------------------
