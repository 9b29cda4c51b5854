"""Reports from run folders: Markdown + HTML with every figure, the T sweep, the CLI command, TensorBoard."""
import base64
import json
import re
import sys

import pytest
import torch
import yaml

from spiketandem.cli import main
from spiketandem.errors import SpiketandemError
from spiketandem.report import accuracy_table, build_report, plot_learning_curve, sweep_rows, write_T_sweep

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_run(path, rule="ltl-offline", acc=0.95, teacher_acc=0.97, with_activity=True, with_teacher_dir=False):
    """A finished run folder as `train` writes it (values made up; the report only reads files)."""
    path.mkdir(parents=True)
    (path / "config.yaml").write_text(yaml.safe_dump({"rule": rule, "dataset": "digits", "arch": "digits-cnn",
                                                      "width": 1.0, "T": 8}))
    rows = [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.8 + 0.03 * e, "test_acc": 0.85 + 0.02 * e, "lr": 1e-3,
             "epoch_seconds": 1.0, "ce": 0.5 / e, "local": 0.1 / e} for e in range(1, 6)]
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    spiking = rule != "ann"
    summary = {"rule": rule, "dataset": "digits", "arch": "digits-cnn", "neuron": "lif" if spiking else None,
               "T": 8 if spiking else None, "epochs": 5, "teacher_acc": teacher_acc, "student_acc": acc,
               "acc_by_T": {"4": acc - 0.1, "8": acc, "16": acc + 0.01} if spiking else {},
               "synops_ratio": 0.6, "train_seconds": 12.0, "peak_memory_bytes": 1, "device": "cpu"}
    if spiking:
        summary.update({"synops_per_sample": 6e5, "student_macs_per_sample": 2e4, "teacher_macs_per_sample": 1e6,
                        "energy": {"mac_pj": 4.6, "ac_pj": 0.9, "student_uj": 0.63, "teacher_uj": 4.6, "ratio": 0.137},
                        "synops_ratio_by_T": {"4": 0.3, "8": 0.6, "16": 1.2},
                        "energy_ratio_by_T": {"4": 0.07, "8": 0.137, "16": 0.27},
                        "ops_by_layer": {"conv1": {"macs": 2e4, "synops": 0, "teacher_macs": 2e4, "ratio": 1.0},
                                         "conv2": {"macs": 0, "synops": 5e5, "teacher_macs": 9e5, "ratio": 0.55}},
                        "layer_rates": {"relu": {"rate": 0.1, "silent": 0.6}, "relu_1": {"rate": 0.05, "silent": 0.7}}})
    (path / "summary.json").write_text(json.dumps(summary))
    if spiking and with_activity:
        layers = {n: {"rate": r, "silent": s, "dead": 0.1, "neurons": 64, "samples": 10}
                  for n, r, s in (("relu", 0.1, 0.6), ("relu_1", 0.05, 0.7))}
        activity = {"T": 8, "samples": 10, "layers": layers,
                    "histograms": {n: [0.6, 0.2, 0.1, 0.05, 0.02, 0.01, 0.01, 0.005, 0.005] for n in layers},
                    "raster": {n: {"neurons": 64, "active": 3, "shown": [1, 5, 9], "times": [[0, 3], [2], [5, 6, 7]],
                                   "T": 8} for n in layers}}
        (path / "activity.json").write_text(json.dumps(activity))
    if with_teacher_dir:
        fake_run(path / "teacher", rule="ann", acc=teacher_acc, teacher_acc=teacher_acc)
    return path


def images_of(markdown: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)


def test_single_run_report_has_every_figure(tmp_path):
    run = fake_run(tmp_path / "demo", with_teacher_dir=True)
    md, page = build_report([run], tmp_path / "out")
    text = md.read_text()
    figures = images_of(text)
    # accuracy/SynOps vs T, learning curve, teacher's learning curve, ops per layer, rates, histograms, raster
    assert len(figures) == 7
    for name in figures:
        data = (tmp_path / "out" / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000
    for heading in ("Comparison of runs", "Accuracy, SynOps and energy per time window", "Learning curves",
                    "Operations and energy per inference", "Firing activity"):
        assert heading in text
    assert "| demo | ltl-offline |" in text and "| 0.6 | 0.137 |" in text  # comparison row: SynOps and energy ratio
    html = page.read_text()
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(embedded) == 7 and base64.b64decode(embedded[0]).startswith(PNG_MAGIC)
    assert "<table>" in html and 'src="' not in html.replace('src="data:', "")  # self-contained


def test_report_across_runs_compares_them(tmp_path):
    a = fake_run(tmp_path / "x" / "run", acc=0.9, with_activity=False)
    b = fake_run(tmp_path / "y" / "run", acc=0.8, with_activity=False)
    t = fake_run(tmp_path / "teacher", rule="ann", acc=0.97)
    md, _ = build_report([a, b, t], tmp_path / "out", title="my comparison")
    text = md.read_text()
    assert text.startswith("# my comparison")
    assert "| x/run |" in text and "| y/run |" in text  # same folder names get their parent
    for name in ("compare_accuracy.png", "compare_learning_curves.png", "compare_T.png"):
        assert f"]({name})" in text and (tmp_path / "out" / name).is_file()
    assert "spiketandem eval" in text  # the run without activity says how to get it


def test_report_rejects_a_folder_that_is_not_a_finished_run(tmp_path):
    with pytest.raises(SpiketandemError, match="not a run folder"):
        build_report([tmp_path], tmp_path / "out")
    run = fake_run(tmp_path / "r")
    (run / "summary.json").unlink()
    with pytest.raises(SpiketandemError, match="summary.json"):
        build_report([run], tmp_path / "out")


def test_report_command(tmp_path, capsys):
    run = fake_run(tmp_path / "r")
    assert main(["report", str(run), "--json"]) == 0
    paths = json.loads(capsys.readouterr().out)
    assert paths["markdown"] == str(run / "report" / "report.md")
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_T_sweep_files(tmp_path):
    run = fake_run(tmp_path / "r")
    summary = json.loads((run / "summary.json").read_text())
    first = sweep_rows(summary)[0]
    assert first == {"T": 4, "accuracy": pytest.approx(0.85), "synops_ratio": 0.3, "energy_ratio": 0.07}
    csv, png = write_T_sweep(run, summary)
    lines = csv.read_text().splitlines()
    assert lines[0] == "T,accuracy,synops_ratio,energy_ratio" and lines[2] == "8,0.95,0.6,0.137"
    assert png.read_bytes().startswith(PNG_MAGIC)


def test_legacy_helpers_still_work(tmp_path):
    table = accuracy_table(0.9, {"8": 0.85, "4": 0.8})
    assert table.splitlines()[3].split() == ["student", "4", "80.00%", "-10.00"]
    plot_learning_curve([{"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "test_acc": 0.6}], tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes().startswith(PNG_MAGIC)


# ---- TensorBoard -------------------------------------------------------------------------------------

class _StubRule:
    """A spiking rule in the shape fit() sees: a student model, predict, train."""

    spiking = True

    def __init__(self, model):
        self.model = model

    def train(self, mode):
        self.model.train(mode)


def test_tensorboard_logs_scalars_rates_and_histograms(tmp_path):
    pytest.importorskip("tensorboard")  # the optional [tensorboard] extra
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from spiketandem.metrics.tensorboard import TensorBoardLogger
    from spiketandem.models import build_model
    from spiketandem.neuron import NeuronConfig
    from spiketandem.student import build_student
    torch.manual_seed(0)
    images = torch.randn(6, 1, 8, 8)
    student = build_student(build_model("digits-cnn", 10, 1, 8), NeuronConfig(), images, calibration_images=images)
    board = TensorBoardLogger(tmp_path / "tb", images, T=4)
    for epoch in (1, 2):
        board.log_epoch(_StubRule(student), {"epoch": epoch, "train_loss": 1.0 / epoch, "train_acc": 0.5,
                                             "test_acc": 0.6, "lr": 0.1, "ce": 0.3})
    board.close()
    events = EventAccumulator(str(next((tmp_path / "tb").iterdir()))).Reload()
    tags = events.Tags()
    expected = {"loss/train", "accuracy/test", "lr", "train/ce", "firing_rate/relu", "firing_rate/relu_2"}
    assert expected <= set(tags["scalars"])
    assert "rate_hist/relu_1" in tags["histograms"]
    assert [e.value for e in events.Scalars("loss/train")] == pytest.approx([1.0, 0.5])


def test_tensorboard_missing_gives_one_clear_error(tmp_path, monkeypatch):
    from spiketandem.metrics.tensorboard import summary_writer
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(SpiketandemError, match=r"spiketandem\[tensorboard\]"):
        summary_writer(tmp_path)
