"""Reports from run folders: Markdown + HTML with every figure, the T sweep, the CLI command, TensorBoard."""
import base64
import json
import re
import sys
from pathlib import Path

import pytest
import torch
import yaml

from spiketandem.cli import main
from spiketandem.errors import SpiketandemError
from spiketandem.report import accuracy_table, build_report, plot_learning_curve, plots, sweep_rows, write_T_sweep
from spiketandem.report.build import front_points, load_run_data, run_settings
from spiketandem.report.document import Document, safe_href

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
    for name in ("compare_accuracy.png", "compare_learning_curves.png", "compare_T.png", "compare_front.png"):
        assert f"]({name})" in text and (tmp_path / "out" / name).is_file()
    assert "spiketandem eval" in text  # the run without activity says how to get it


def test_the_report_names_each_ratio_s_synops_convention(tmp_path):
    a = fake_run(tmp_path / "a", with_activity=False)
    summary = json.loads((a / "summary.json").read_text())
    summary.update(synops_convention="standard", synops_ratio_by_convention={"exact": 0.8, "standard": 0.6})
    (a / "summary.json").write_text(json.dumps(summary))
    text = build_report([a], tmp_path / "one")[0].read_text()
    assert "| SynOps ratio (standard) | energy ratio |" in text  # comparison and per-T tables: in the header
    assert "SynOps (accumulates, standard)" in text
    assert "SynOps ratio at T = 8 in each convention (docs/metrics.md): exact 0.8, standard 0.6." in text
    b = fake_run(tmp_path / "b", with_activity=False)  # counted exact (a summary from before the choice)
    text = build_report([a, b], tmp_path / "two")[0].read_text()
    table = text.split("## Comparison of runs", 1)[1].split("\n\n")[1]
    assert "| SynOps ratio | energy ratio |" in table  # conventions differ: each value names its own
    assert "| 0.6 (standard) |" in table and "| 0.6 (exact) |" in table


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
    # a summary without synops_convention predates the choice: its SynOps were counted exact
    assert lines[0] == "T,accuracy,synops_ratio,energy_ratio,synops_convention"
    assert lines[2] == "8,0.95,0.6,0.137,exact"
    assert png.read_bytes().startswith(PNG_MAGIC)


def test_legacy_helpers_still_work(tmp_path):
    table = accuracy_table(0.9, {"8": 0.85, "4": 0.8})
    assert table.splitlines()[3].split() == ["student", "4", "80.00%", "-10.00"]
    plot_learning_curve([{"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "test_acc": 0.6}], tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes().startswith(PNG_MAGIC)


# ---- escaping: nothing read from a run folder becomes live HTML or a link ----------------------------

EVIL = "[x](javascript:alert(1))"


def test_a_malicious_summary_value_and_folder_name_stay_text(tmp_path):
    run = fake_run(tmp_path / EVIL)                      # a folder named like a Markdown link
    summary = json.loads((run / "summary.json").read_text())
    summary.update(dataset=EVIL, arch="<script>alert(2)</script>", device="`x` [y](javascript:alert(3)) **z**")
    (run / "summary.json").write_text(json.dumps(summary))
    other = fake_run(tmp_path / "ok")
    md, page = build_report([run, other], tmp_path / "out")
    html = page.read_text()
    assert "javascript:" not in " ".join(re.findall(r'href="([^"]*)"', html))
    assert "<a " not in html and "<script>" not in html
    assert "&lt;script&gt;" in html and "[x](javascript:alert(1))" in html  # shown, as text
    text = md.read_text()
    assert EVIL not in text.replace("`" + str(run) + "`", "")        # in Markdown only inside a code span ...
    assert r"\[x\](javascript:alert(1))" in text and r"\<script\>" in text   # ... or escaped


def test_links_only_to_http_or_to_files_of_the_report(tmp_path):
    (tmp_path / "fig.png").write_bytes(b"png")
    doc = Document("t")
    doc.text("[ok](fig.png) [web](https://example.org/a?b=1) [missing](nothere.png) [js](javascript:alert(1)) "
             "[data](data:text/html,x) [up](../secret) [abs](/etc/passwd) [proto](//evil.example) "
             "[mixed](JaVaScRiPt:alert(1)) `[code](https://x.org)`")
    html = doc.html(tmp_path)
    assert re.findall(r'href="([^"]*)"', html) == ["fig.png", "https://example.org/a?b=1"]
    assert "<code>[code](https://x.org)</code>" in html
    for bad in ("javascript:x", "data:text/html,x", "../a", "/etc/passwd", "//evil", "file:///etc", "vbscript:x",
                "a b", 'x"onmouseover=alert(1)'):
        assert safe_href(bad, tmp_path) is None
    assert safe_href("http://a.org") == "http://a.org" and safe_href("sub/f.png") == "sub/f.png"


# ---- figures: one colour per run, layers by teacher path, chance level, settings -------------------

def test_the_front_of_several_runs_puts_every_point_in_one_convention(tmp_path):
    a = fake_run(tmp_path / "a", acc=0.9, with_activity=False)
    b = fake_run(tmp_path / "b", acc=0.8, with_activity=False)
    runs = [load_run_data(a, "a"), load_run_data(b, "b")]
    points, convention = front_points(runs)   # one convention (exact, from before the choice): every evaluated T
    assert convention == "exact"
    assert sorted((p["method"], p["T"], round(p["acc"], 4), p["synops_ratio"]) for p in points) == [
        ("a", 4, 0.8, 0.3), ("a", 8, 0.9, 0.6), ("a", 16, 0.91, 1.2),
        ("b", 4, 0.7, 0.3), ("b", 8, 0.8, 0.6), ("b", 16, 0.81, 1.2)]
    summary = json.loads((a / "summary.json").read_text())   # a counted standard: the two no longer share an axis
    summary.update(synops_convention="standard", synops_ratio=0.5,
                   synops_ratio_by_convention={"exact": 0.7, "standard": 0.5})
    (a / "summary.json").write_text(json.dumps(summary))
    points, convention = front_points([load_run_data(a, "a"), load_run_data(b, "b")])
    assert convention == "standard" and points == [{"method": "a", "T": 8, "acc": 0.9, "synops_ratio": 0.5,
                                                    "label": "T=8"}]   # b recorded no standard count
    text = build_report([a, b], tmp_path / "out")[0].read_text()
    assert "Accuracy vs SynOps ratio (standard convention)" in text
    assert "Not drawn (no standard count recorded): b." in text
    assert (tmp_path / "out" / "compare_front.png").read_bytes().startswith(PNG_MAGIC)


def test_run_colors_are_stable_and_distinct():
    colors = plots.run_colors(["a", "b", "c"])
    assert colors == plots.run_colors(["a", "b", "c"]) and len(set(colors.values())) == 3
    assert plots.run_colors(["a", "b", "c", "d"])["b"] == colors["b"]   # adding a run keeps the others' colours


def test_every_figure_of_a_report_draws_a_run_in_its_colour(tmp_path, monkeypatch):
    calls = []   # (figure function, output file, {series: colour})
    for name in ("plot_bars", "plot_learning_curves", "plot_T_sweep", "plot_front", "plot_learning_curve",
                 "plot_ops_by_layer", "plot_layer_rates", "plot_rate_histograms", "plot_raster"):
        def record(*args, _name=name, _original=getattr(plots, name), **kwargs):
            out = next(a for a in args if isinstance(a, Path))
            calls.append((_name, out.name, kwargs.get("colors") or {None: kwargs.get("color")}))
            return _original(*args, **kwargs)
        monkeypatch.setattr(plots, name, record)
    a, b = fake_run(tmp_path / "a"), fake_run(tmp_path / "b", acc=0.9)
    build_report([a, b], tmp_path / "out")
    expected = plots.run_colors(["a", "b"])
    assert expected["a"] != expected["b"]
    assert {name for name, _, _ in calls} == {"plot_bars", "plot_learning_curves", "plot_T_sweep", "plot_front",
                                              "plot_learning_curve", "plot_ops_by_layer", "plot_layer_rates",
                                              "plot_rate_histograms", "plot_raster"}
    for name, file, colors in calls:
        if file.startswith("compare_"):                   # one series per run, keyed by its label
            assert colors == expected, (name, file)
        else:                                             # one run's figure: "<run>-....png"
            run = file.split("-")[0]
            assert set(colors.values()) == {expected[run]}, (name, file)


def test_layers_are_named_by_teacher_module_path(tmp_path):
    run = fake_run(tmp_path / "r")
    activity = json.loads((run / "activity.json").read_text())
    activity["layers"]["relu"]["path"] = "features.1"
    activity["layers"]["relu_1"]["path"] = "layer1.0.relu@1"
    (run / "activity.json").write_text(json.dumps(activity))
    data = load_run_data(run)
    assert data.layer_label("relu") == "features.1" and data.layer_label("relu_1") == "layer1.0.relu@1"
    md, _ = build_report([run], tmp_path / "out")
    text = md.read_text()
    assert "| features.1 | 64 |" in text and "| layer1.0.relu@1 | 64 |" in text
    assert "| relu |" not in text
    legacy = fake_run(tmp_path / "old")   # an activity record without paths: the summary's, else the name
    summary = json.loads((legacy / "summary.json").read_text())
    summary["layer_rates"]["relu"]["path"] = "block.relu"
    (legacy / "summary.json").write_text(json.dumps(summary))
    old = load_run_data(legacy)
    assert old.layer_label("relu") == "block.relu" and old.layer_label("relu_1") == "relu_1"


def test_chance_level_and_test_resolution_on_accuracy_axes(tmp_path):
    assert plots.chance_level(10) == pytest.approx(0.1) and plots.chance_level(None) is None
    assert plots.chance_level(1) is None and plots.resolution_points(400) == pytest.approx(0.25)
    fig, ax = plots.plt.subplots()
    ax.plot([1, 2, 3], [5, 40, 90])                       # chance (10 %) in view: a line at 10
    note = plots._accuracy_axis(ax, 0.1, 400)
    chance = [line for line in ax.get_lines() if line.get_label().startswith("chance")]
    assert len(chance) == 1 and chance[0].get_ydata()[0] == pytest.approx(10.0)
    assert "starts at" not in note and note.endswith("1 test image = 0.25 points")
    fig, ax = plots.plt.subplots()
    ax.plot([1, 2, 3], [85, 90, 97])                      # zoomed in: the note says so, and where chance is
    note = plots._accuracy_axis(ax, 0.1, 360)
    assert "y axis starts at" in note and "chance 10% is below it" in note and "0.28 points" in note
    assert not [line for line in ax.get_lines() if line.get_label().startswith("chance")]
    plots.plt.close("all")
    rows = [{"epoch": e, "train_loss": 1.0 / e, "test_acc": 0.1 * e} for e in range(1, 4)]
    plots.plot_learning_curve(rows, tmp_path / "c.png", chance=0.1, test_size=360)
    assert (tmp_path / "c.png").read_bytes().startswith(PNG_MAGIC)


def test_report_reads_class_count_and_test_size_from_the_summary(tmp_path):
    run = fake_run(tmp_path / "r")
    summary = json.loads((run / "summary.json").read_text())
    summary.update(num_classes=10, test_samples=360)
    (run / "summary.json").write_text(json.dumps(summary))
    data = load_run_data(run)
    assert data.chance == pytest.approx(0.1) and data.test_size == 360
    text = build_report([run], tmp_path / "out")[0].read_text()
    assert "10 classes (chance 10%)" in text and "one image = 0.28 points" in text


def test_settings_table_in_markdown_and_html(tmp_path):
    cfg = {"rule": "ltl-offline", "name": None, "dataset": "digits", "arch": None, "neuron": "lif", "T": 8,
           "epochs": 5, "batch_size": 64, "lr": 0.001, "optimizer": "adam", "seed": 3, "out": "/somewhere",
           "eval_T": [4, 8], "detach_reset": False, "options": {"lambda": 0.5}}
    a, b = fake_run(tmp_path / "a"), fake_run(tmp_path / "b")
    (a / "config.yaml").write_text(yaml.safe_dump(cfg))
    (b / "config.yaml").write_text(yaml.safe_dump({**cfg, "lr": 0.01}))
    settings = run_settings(load_run_data(a))
    assert list(settings)[:4] == ["rule", "dataset", "arch", "neuron"]
    assert settings["arch"] == "digits-cnn"               # left to the default in config: the summary says what ran
    assert settings["eval_T"] == "4, 8" and settings["detach_reset"] == "no" and settings["options.lambda"] == "0.5"
    assert "out" not in settings and "name" not in settings
    md, page = build_report([a, b], tmp_path / "out")
    text = md.read_text()
    assert "## Settings" in text and "| setting | a | b |" in text
    table = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    assert table.index("| ≠ lr | 0.001 | 0.01 |") < table.index("| rule | ltl-offline | ltl-offline |")
    for row in ("| T | 8 | 8 |", "| epochs | 5 | 5 |", "| batch_size | 64 | 64 |", "| optimizer | adam | adam |",
                "| seed | 3 | 3 |", "| neuron | lif | lif |"):
        assert row in table
    html = page.read_text()
    assert 'id="settings"' in html and "<td style=\"text-align:left\">≠ lr</td>" in html


# ---- TensorBoard -------------------------------------------------------------------------------------

class _StubRule:
    """A spiking rule in the shape fit() sees: a student model, its context, train."""

    spiking = True

    def __init__(self, model):
        self.model = model

    def train(self, mode):
        self.model.train(mode)

    def context(self, batch, T=None, **fields):
        return self.model.context(T, batch, **fields)


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


def _hparams_of(log_dir):
    """The hparams (name -> value) written to the event files under ``log_dir``."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
    found = {}
    for path in log_dir.rglob("events.out.tfevents.*"):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "hparams":
                    data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
                    for k, v in data.session_start_info.hparams.items():
                        found[k] = getattr(v, v.WhichOneof("kind"))
    return found


def test_tensorboard_hparams_and_step_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from spiketandem.config import make_config
    from spiketandem.metrics.tensorboard import TensorBoardLogger
    cfg = make_config({"rule": "ltl-offline", "T": 8, "lr": 0.01, "epochs": 3, "options": {}})
    board = TensorBoardLogger(tmp_path / "tb", config=cfg, step_every=4)
    for step in range(1, 11):                              # 10 steps: points at 4 and 8, the rest at close
        board.log_step(step, {"loss": float(step), "correct": 8, "ce": torch.tensor(0.5)}, samples=16)
    board.log_epoch(_StubRule(torch.nn.Linear(1, 1)), {"epoch": 1, "train_loss": 1.0, "test_acc": 0.5})
    board.close()
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    loss = events.Scalars("step/loss")
    assert [e.step for e in loss] == [4, 8, 10]
    assert [e.value for e in loss] == pytest.approx([2.5, 6.5, 9.5])   # the mean of each window
    assert [e.value for e in events.Scalars("step/accuracy")] == pytest.approx([0.5] * 3)
    assert [e.value for e in events.Scalars("step/ce")] == pytest.approx([0.5] * 3)
    hp = _hparams_of(tmp_path / "tb")
    assert hp["rule"] == "ltl-offline" and hp["T"] == 8 and hp["lr"] == pytest.approx(0.01) and hp["epochs"] == 3
    assert hp["optimizer"] == "default" and hp["eval_T"] == "4, 8, 16, 32"
    assert [p.name for p in (tmp_path / "tb").iterdir() if p.is_dir()] == []  # one run, no hparams sub-run


def test_tensorboard_names_layers_by_teacher_path(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from spiketandem.metrics.tensorboard import TensorBoardLogger
    from spiketandem.models import build_model
    from spiketandem.neuron import NeuronConfig
    from spiketandem.student import build_student
    torch.manual_seed(0)
    images = torch.randn(6, 1, 8, 8)
    student = build_student(build_model("digits-cnn", 10, 1, 8), NeuronConfig(), images, calibration_images=images)
    student.neurons["relu"].path = "features.relu"
    board = TensorBoardLogger(tmp_path / "tb", images, T=4)
    board.log_epoch(_StubRule(student), {"epoch": 1, "train_loss": 1.0})
    board.close()
    tags = EventAccumulator(str(tmp_path / "tb")).Reload().Tags()
    assert "firing_rate/features.relu" in tags["scalars"] and "firing_rate/relu" not in tags["scalars"]
    assert "rate_hist/features.relu" in tags["histograms"]


def test_tensorboard_missing_gives_one_clear_error(tmp_path, monkeypatch):
    from spiketandem.metrics.tensorboard import summary_writer
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    with pytest.raises(SpiketandemError, match=r"spiketandem\[tensorboard\]"):
        summary_writer(tmp_path)
