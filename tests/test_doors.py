"""Every door computes the network that was trained: for students whose membranes start charged
(U[0] = f * theta: --membrane-init, --recipe low-latency, QCFS's shift), the training loop's test accuracy,
the final evaluation, `spiketandem eval`, the Python API on the student in memory and reloaded in a fresh
process, the firing rates of summary.json and TensorBoard, NIR export and its verification all agree."""
import json
import subprocess
import sys

import pytest
import torch

from spiketandem import api
from spiketandem.cli import main
from spiketandem.data.feeding import evaluation_batches
from spiketandem.errors import SpiketandemError
from spiketandem.model_file import load_student
from spiketandem.neuron import RunContext
from spiketandem.workflow import load_run, prepare
from spiketandem.rules.hybrid import membrane_start
from spiketandem.runs import RunFolder

T = 2
COMMON = ["--dataset", "digits", "--arch", "digits-cnn", "--T", str(T), "--eval-T", "2", "4", "--n-train", "300",
          "--n-test", "120", "--batch-size", "64", "--quiet"]
# every rule with a membrane start, and the flags that give it one
STARTED = {
    "ltl-offline --membrane-init": (["--rule", "ltl-offline", "--membrane-init", "0.5", "--epochs", "1"], 0.5),
    "ltl-offline --recipe low-latency": (["--rule", "ltl-offline", "--recipe", "low-latency", "--epochs", "1"], 0.5),
    "convert": (["--rule", "convert", "--neuron", "if", "--epochs", "0", "--membrane-init", "0.5"], 0.5),
    "qcfs": (["--rule", "qcfs", "--neuron", "if", "--epochs", "1", "--qcfs-levels", "4", "--qcfs-shift", "0.4"], 0.4),
    "convert-stbp": (["--rule", "convert-stbp", "--membrane-init", "0.5", "--epochs", "1"], 0.5),
    # trained in bf16: every door (the loop's test accuracy too) evaluates the float32 network
    "ltl-offline --amp bf16": (["--rule", "ltl-offline", "--recipe", "low-latency", "--epochs", "2", "--amp", "bf16"],
                               0.5),
}

FRESH = """
import json, sys, torch
from spiketandem import api
from spiketandem.model_file import load_student
from spiketandem.neuron import RunContext
x, y = torch.load(sys.argv[2], weights_only=True)
student = load_student(sys.argv[1])
accuracy = {t: api.accuracy(student, x, y, t) for t in (2, 4)}
ctx = RunContext(T=int(sys.argv[3]), batch=x.shape[0], records={})
with torch.no_grad():
    student.run(x, ctx)
rates = {name: float((s != 0).double().mean()) for name, s in ctx.records.items()}
print(json.dumps({"accuracy": accuracy, "rates": rates}))
"""


def _test_set(run) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's test images, normalised as its evaluation sees them, and their labels."""
    cfg = load_run(run, "cpu")[0]
    cfg, data, _, device = prepare(cfg)
    xs, ys = zip(*evaluation_batches(data, cfg, device))
    return torch.cat(xs), torch.cat(ys)


def _rates(student, x, start: float | None = None) -> dict[str, float]:
    """Spikes per neuron per step of each layer, on the forward that the accuracy comes from; ``start``: every
    membrane started explicitly at start * theta (an independent statement of the trained network)."""
    state = membrane_start(student, start) if start is not None else None
    ctx = RunContext(T=T, batch=x.shape[0], records={}, state_in=state)
    with torch.no_grad():
        student.run(x, ctx)
    return {name: float((s != 0).double().mean()) for name, s in ctx.records.items()}


@pytest.fixture(scope="module", params=list(STARTED))
def started_run(request, digits_teacher, tmp_path_factory):
    """(case, run folder, the start f) of a digits student trained by the CLI with a membrane start."""
    flags, start = STARTED[request.param]
    run = tmp_path_factory.mktemp("doors") / "run"
    torch.manual_seed(0)
    assert main(["train", *COMMON, *flags, "--teacher", digits_teacher, "--out", str(run)]) == 0
    return request.param, run, start


def test_the_student_carries_its_membrane_start(started_run):
    _, run, start = started_run
    student = load_student(run)
    assert list(student.membrane_inits().values()) == pytest.approx([start] * len(student.neurons))
    state = student.start_state()
    for name, neuron in student.neurons.items():
        assert float(state[name].u) == pytest.approx(start * float(neuron.threshold))
        assert float(state[name].s) == 0.0


def test_every_door_reports_the_accuracy_of_the_trained_network(started_run, tmp_path, capsys):
    case, run, start = started_run
    folder = RunFolder(run)
    summary = folder.read_json("summary.json")
    final = {int(t): a for t, a in summary["acc_by_T"].items()}
    rows = folder.read_metrics()
    if rows:  # the rules that train: the loop's last test accuracy is the final evaluation's
        assert rows[-1]["test_acc"] == final[T], case
    capsys.readouterr()
    assert main(["eval", str(run), "--eval-T", "2", "4", "--json", "--quiet"]) == 0
    evaluated = {int(t): a for t, a in json.loads(capsys.readouterr().out)["acc_by_T"].items()}
    assert evaluated == final, case

    x, y = _test_set(run)
    student = load_student(run)
    assert {t: api.accuracy(student, x, y, t) for t in (2, 4)} == final, case
    torch.save((x, y), tmp_path / "test.pt")
    fresh = subprocess.run([sys.executable, "-c", FRESH, str(run), str(tmp_path / "test.pt"), str(T)],
                           capture_output=True, text=True, check=True)
    reloaded = json.loads(fresh.stdout)
    assert {int(t): a for t, a in reloaded["accuracy"].items()} == final, case

    # the firing rates summary.json reports are those of the network evaluated
    reported = {name: entry["rate"] for name, entry in summary["layer_rates"].items()}
    assert reported == pytest.approx(reloaded["rates"], abs=1e-12), case
    assert reported == pytest.approx(_rates(student, x, start), abs=1e-12), case

    # the operation count of summary.json is the API's, on the same 64 images (metrics.evaluation.COUNT_SAMPLES)
    from spiketandem.teachers import load_teacher
    teacher = load_teacher(run / "teacher.pt")[0]
    assert api.synops_ratio(student, teacher, x[:64], T) == pytest.approx(summary["synops_ratio"], rel=1e-9), case

    # and the start matters: without it the same weights compute another network
    student.set_membrane_init(0.0)
    assert _rates(student, x) != pytest.approx(reloaded["rates"], abs=1e-12), case


def test_the_api_exports_no_file_that_computes_another_network(started_run, tmp_path):
    pytest.importorskip("nir")
    _, run, start = started_run
    student = load_student(run)
    path = tmp_path / "student.nir"
    with pytest.raises(SpiketandemError, match=f"starts every membrane at {start:g} x its threshold"):
        api.export_nir(student, path, allow_subtract_reset=True)
    assert not path.exists()


def test_nir_verification_compares_against_the_trained_network(started_run, tmp_path):
    """A file written from the same weights started at v = 0 is another network: verify_nir's own side is
    the trained (started) student, so it reports the trained accuracy and the file's disagreement."""
    pytest.importorskip("nir")
    from spiketandem.export.verify import verify_nir
    case, run, _ = started_run
    x, y = _test_set(run)
    x, y = x[:48], y[:48]
    started = load_student(run)
    unstarted = load_student(run)
    unstarted.set_membrane_init(0.0)
    path = api.export_nir(unstarted, tmp_path / "unstarted.nir", allow_subtract_reset=True)
    result = verify_nir(path, started, x, y, T, importers=("reference",))
    assert result["student_accuracy"] == api.accuracy(started, x, y, T), case
    reference = result["importers"]["reference"]
    assert not reference["spike_counts_identical"], case


def test_tensorboard_rates_are_those_of_the_trained_network(started_run, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from spiketandem.metrics.tensorboard import TensorBoardLogger
    case, run, start = started_run
    rule = load_run(run, "cpu")[1]
    x = _test_set(run)[0][:16]
    board = TensorBoardLogger(tmp_path / "tb", x, T=T)
    board.log_epoch(rule, {"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "test_acc": 0.5, "lr": 0.1})
    board.close()
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    expected = _rates(rule.model, x, start)
    paths = {name: m.path for name, m in rule.model.neurons.items()}
    logged = {name: events.Scalars(f"firing_rate/{paths[name]}")[0].value for name in expected}
    assert logged == pytest.approx(expected, abs=1e-6), case


def test_a_student_trained_through_the_api_scores_its_loop_accuracy(digits_teacher, tmp_path):
    """api.train's student, in memory and saved and reloaded, scores the training loop's last test accuracy."""
    from spiketandem.config import make_config
    from spiketandem.teachers import load_teacher
    teacher = load_teacher(digits_teacher)[0]
    cfg, data, _, _ = prepare(make_config({"dataset": "digits", "arch": "digits-cnn", "n_train": 300, "n_test": 120,
                                           "T": T, "batch_size": 64}))
    history = []
    torch.manual_seed(0)
    student = api.train("ltl-offline", data, teacher=teacher, T=T, epochs=1, batch_size=64, membrane_init=0.5,
                        history=history)
    xs, ys = zip(*evaluation_batches(data, cfg, "cpu"))
    assert api.accuracy(student, torch.cat(xs), torch.cat(ys), T) == history[-1]["test_acc"]
    reloaded = api.save_student(student, tmp_path / "student.pt")
    assert api.accuracy(load_student(reloaded, teacher=teacher), torch.cat(xs), torch.cat(ys), T) == history[-1]["test_acc"]
