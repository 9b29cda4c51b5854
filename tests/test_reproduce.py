"""The reproduction harness: every experiment file is valid, scales apply, missing pieces fail clearly,
and a tiny experiment runs end to end (teacher, student, T sweep, a further command, report)."""
import json
from pathlib import Path

import pytest
import yaml

from spiketandem.cli import main
from spiketandem.config import make_config
from spiketandem.errors import SpiketandemError
from spiketandem.rules import configure
from spiketandem.reproduce import apply_scale, check_requirements, list_experiments, load_experiment, run_configs

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_the_paper_experiments_are_all_there():
    names = set(list_experiments())
    table1 = {f"table1-{d}-{a}" for d, archs in (("cifar10", ("vgg11", "vgg16", "resnet20")),
                                                 ("cifar100", ("vgg11", "vgg16", "resnet20")),
                                                 ("tiny-imagenet", ("vgg13", "vgg16", "resnet20"))) for a in archs}
    assert table1 | {"fig2-time-window", "fig3-learning-curves", "fig4-hardware-noise", "table2-complexity"} <= names


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_scale_of_every_experiment_makes_valid_run_configs(path):
    exp = load_experiment(str(path))
    for scale in ["full", *exp.scales]:
        scaled = apply_scale(exp, scale)
        teacher, students = run_configs(scaled, Path("/tmp/out"))
        for fields in ([teacher] if teacher else []) + [f for _, f in students]:
            configure(make_config(fields))  # raises on an unknown field, option or a bad value
        paper = exp.paper.get("results") or {}
        assert set(paper) <= set(exp.run_names()), "paper results must name runs of the experiment"


def test_table1_row_carries_the_papers_numbers_and_settings():
    exp = load_experiment("table1-cifar10-vgg11")
    assert exp.paper["teacher_acc"] == 92.89 and exp.paper["results"]["offline-lif-T16"] == 93.20
    run = next(r for r in exp.runs if r["name"] == "online-lif-T32")
    assert (run["rule"], run["T"], run["epochs"], run["lr"]) == ("ltl-online", 32, 50, 1e-4)
    cpu = apply_scale(exp, "cpu", {"epochs": 1, "n_train": 100})
    assert cpu.defaults["width"] == 0.25 and cpu.defaults["n_train"] == 100
    assert all(r["epochs"] == 1 for r in cpu.runs) and cpu.teacher["epochs"] == 15


def write_experiment(tmp_path, **sections) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(sections))
    return path


def test_missing_rules_and_commands_fail_before_anything_runs(tmp_path):
    path = write_experiment(tmp_path, title="t", defaults={"dataset": "digits"},
                            runs=[{"name": "a", "rule": "no-such-rule"}, {"name": "b", "rule": "ltl-offline"}],
                            commands=[["no-such-command", "{run:b}"], ["bench", "no-such-benchmark"]])
    with pytest.raises(SpiketandemError) as err:
        check_requirements(load_experiment(str(path)))
    message = str(err.value)
    assert "'no-such-rule' (runs a)" in message and "`spiketandem no-such-command`" in message
    assert "`spiketandem bench no-such-benchmark`" in message and "--only" in message and "--no-steps" in message
    assert main(["reproduce", str(path), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()


def test_bad_experiment_files_name_the_problem(tmp_path):
    with pytest.raises(SpiketandemError, match="no experiment 'nope'"):
        load_experiment("nope")
    with pytest.raises(SpiketandemError, match="unknown section"):
        load_experiment(str(write_experiment(tmp_path, title="t", runz=[])))
    path = write_experiment(tmp_path, title="t", runs=[{"name": "a"}], scales={"cpu": {"width": 0.5}})
    with pytest.raises(SpiketandemError, match="unknown key"):
        apply_scale(load_experiment(str(path)), "cpu")
    with pytest.raises(SpiketandemError, match="no scale 'gpu'"):
        apply_scale(load_experiment(str(path)), "gpu")


def test_dry_run_prints_the_plan(tmp_path, capsys):
    assert main(["reproduce", "table1-cifar10-vgg11", "--scale", "digits", "--only", "offline-if-T32", "--dry-run",
                 "--json", "--out", str(tmp_path)]) == 0
    plan = json.loads(capsys.readouterr().out)
    run = plan["runs"]["offline-if-T32"]
    assert list(plan["runs"]) == ["offline-if-T32"] and run["dataset"] == "digits" and run["T"] == 32
    assert run["teacher"] == str(tmp_path / "teacher" / "teacher.pt") and plan["teacher"]["rule"] == "ann"


def test_tiny_experiment_end_to_end(tmp_path):
    path = write_experiment(
        tmp_path, title="tiny", paper={"teacher_acc": 90.0, "results": {"ltl": 91.0}},
        defaults={"dataset": "digits", "arch": "digits-mlp", "width": 0.25, "n_train": 200, "n_test": 100,
                  "batch_size": 100},
        teacher={"epochs": 2}, runs=[{"name": "ltl", "rule": "ltl-offline", "T": 4, "epochs": 1, "eval_T": [4]}],
        evaluate={"sweep_T": [2, 4]}, commands=[["report", "{run:ltl}", "--out", "{out}/extra"]])
    out = tmp_path / "out"
    assert main(["reproduce", str(path), "--out", str(out), "--quiet"]) == 0
    result = json.loads((out / "reproduction.json").read_text())
    measured = result["measured"]["ltl"]
    assert set(measured["acc_by_T"]) == {"2", "4"} and set(measured["synops_ratio_by_T"]) == {"2", "4"}
    assert result["paper"]["results"]["ltl"] == 91.0 and result["machine"]["torch"]
    assert (out / "ltl" / "sweep_T.csv").is_file() and (out / "extra" / "report.md").is_file()
    report = (out / "report" / "report.md").read_text()
    assert "## Paper vs this reproduction" in report and "| ltl | 4 | 91.00% |" in report
    # finished runs are reused: a second call trains nothing
    assert main(["reproduce", str(path), "--out", str(out), "--quiet", "--no-steps"]) == 0
    assert json.loads((out / "ltl" / "summary.json").read_text())["train_seconds"] == measured["train_seconds"]


def test_a_run_with_several_seeds_is_one_folder_each_reported_as_mean_and_std(tmp_path, capsys):
    path = write_experiment(
        tmp_path, title="seeds", defaults={"dataset": "digits", "arch": "digits-mlp", "width": 0.25, "n_train": 200,
                                           "n_test": 100, "batch_size": 100},
        teacher={"epochs": 2}, runs=[{"name": "ltl", "T": 4, "epochs": 1, "eval_T": [4], "seeds": [1, 2]},
                                     {"name": "one", "T": 2, "epochs": 1, "eval_T": [2]}])
    out = tmp_path / "out"
    assert main(["reproduce", str(path), "--out", str(out), "--quiet"]) == 0
    assert not (out / "ltl").exists() and not (out / "one-seed0").exists()
    accs = [json.loads((out / f"ltl-seed{s}" / "summary.json").read_text())["student_acc"] for s in (1, 2)]
    assert [yaml.safe_load((out / f"ltl-seed{s}" / "config.yaml").read_text())["seed"] for s in (1, 2)] == [1, 2]
    measured = json.loads((out / "reproduction.json").read_text())["measured"]
    assert measured["ltl"]["student_acc"] == pytest.approx(sum(accs) / 2)
    assert measured["ltl"]["student_acc_std"] == pytest.approx(abs(accs[0] - accs[1]) / 2 ** 0.5)
    assert measured["ltl"]["acc_by_seed"] == {"1": accs[0], "2": accs[1]} and measured["ltl"]["n_seeds"] == 2
    assert measured["one"]["n_seeds"] == 1 and measured["one"]["student_acc_std"] is None
    mean, std = measured["ltl"]["student_acc"], measured["ltl"]["student_acc_std"]
    assert f"{100 * mean:.2f} ± {100 * std:.2f}% (2 seeds)" in (out / "report" / "report.md").read_text()
    # --report-only reports the finished runs and seeds, names the others, and refuses when none has finished
    for unfinished in (out / "ltl-seed2", out / "one"):
        (unfinished / "summary.json").unlink()
    assert main(["reproduce", str(path), "--out", str(out), "--report-only"]) == 0
    assert f"not finished, left out of the report: {out / 'ltl-seed2'}, {out / 'one'}" in capsys.readouterr().out
    partial = json.loads((out / "reproduction.json").read_text())["measured"]
    assert list(partial) == ["ltl"] and partial["ltl"]["acc_by_seed"] == {"1": accs[0]}
    (out / "ltl-seed1" / "summary.json").unlink()
    assert main(["reproduce", str(path), "--out", str(out), "--report-only"]) == 2
    assert "--report-only: no run of" in capsys.readouterr().err
    # --seeds overrides every run's own seeds
    assert main(["reproduce", str(path), "--out", str(out), "--seeds", "7", "8", "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert sorted(plan["runs"]) == ["ltl-seed7", "ltl-seed8", "one-seed7", "one-seed8"]
    assert plan["runs"]["one-seed8"]["seed"] == 8 and plan["runs"]["one-seed8"]["out"] == str(out / "one-seed8")


def test_a_scale_may_give_the_teacher_and_its_own_runs(tmp_path, digits_teacher):
    path = write_experiment(
        tmp_path, title="given", defaults={"dataset": "digits", "arch": "digits-cnn", "n_train": 200, "n_test": 100},
        teacher={"epochs": 30}, runs=[{"name": "paper-run", "T": 32, "epochs": 100}],
        scales={"small": {"teacher": digits_teacher, "runs": [{"name": "ltl-T2", "T": 2, "epochs": 1, "eval_T": [2]}]}})
    exp = apply_scale(load_experiment(str(path)), "small")
    assert exp.teacher is None and exp.defaults["teacher"] == digits_teacher and exp.run_names() == ["ltl-T2"]
    out = tmp_path / "out"
    assert main(["reproduce", str(path), "--scale", "small", "--out", str(out), "--quiet"]) == 0
    assert not (out / "teacher").exists()  # the given teacher is used, none trained
    result = json.loads((out / "reproduction.json").read_text())
    summary = json.loads((out / "ltl-T2" / "summary.json").read_text())
    assert result["teacher_acc"] == summary["teacher_acc"] and list(result["measured"]) == ["ltl-T2"]
    gap = 100 * (summary["teacher_acc"] - summary["student_acc"])
    exact, standard = (summary["synops_ratio_by_convention"][c] for c in ("exact", "standard"))
    assert (f"| ltl-T2 | 2 | – | {100 * summary['student_acc']:.2f}% | {gap:.2f} | {exact:.3f} | {standard:.3f} | 1 |"
            in (out / "report" / "report.md").read_text())


def test_an_event_dataset_experiment_passes_the_requirement_check(tmp_path):
    """Every dataset `train` accepts (image and event datasets, one registry) is known to reproduce."""
    path = tmp_path / "events.yaml"
    path.write_text("title: N-MNIST\ndefaults: {dataset: nmnist, arch: digits-mlp}\n"
                    "runs:\n  - {name: ltl, rule: ltl-offline, T: 4}\n")
    check_requirements(load_experiment(str(path)))  # raised "dataset 'nmnist' is not known" before
    path.write_text("title: bad\ndefaults: {dataset: mnist-9000}\nruns:\n  - {name: a}\n")
    with pytest.raises(SpiketandemError, match="dataset 'mnist-9000' is not known.*nmnist"):
        check_requirements(load_experiment(str(path)))


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_further_step_of_every_experiment_parses(path):
    """Each command of each scale, placeholders and {defaults} filled in, is a valid command line."""
    from spiketandem.cli import build_parser
    from spiketandem.reproduce.runner import _substitute
    exp = load_experiment(str(path))
    for scale in ["full", *exp.scales]:
        scaled = apply_scale(exp, scale, {"data_dir": "/data"})
        for cmd in scaled.commands:
            argv = [a for token in cmd for a in _substitute(token, Path("/tmp/out"), scaled.defaults)]
            build_parser().parse_args(argv)  # exits (SystemExit) on an unknown flag or a bad value


def test_defaults_become_flags_of_a_step():
    from spiketandem.reproduce.runner import defaults_as_flags
    assert defaults_as_flags({"dataset": "digits", "n_train": 200, "eval_T": [2, 4], "channels_last": True,
                              "amp": None, "tensorboard": False}) == [
        "--dataset", "digits", "--n-train", "200", "--eval-T", "2", "4", "--channels-last"]


def test_a_compare_step_takes_the_defaults_and_lands_in_the_report(tmp_path, digits_teacher):
    """A command-only experiment (the latency-energy frontier's form): `compare` with {defaults}; its
    table is in the reproduction's report and its runs' training time in the total."""
    path = write_experiment(
        tmp_path, title="front", defaults={"dataset": "digits", "n_train": 300, "n_test": 100, "epochs": 1},
        commands=[["compare", "{defaults}", "--arch", "digits-cnn", "--teacher", digits_teacher, "--rules",
                   "ltl-offline", "convert", "--sweep", "none", "--T", "2", "--eval-T", "2", "--out", "{out}/cnn"]])
    out = tmp_path / "out"
    assert main(["reproduce", str(path), "--out", str(out), "--quiet"]) == 0
    config = json.loads(json.dumps(yaml.safe_load((out / "cnn" / "ltl-offline" / "config.yaml").read_text())))
    assert config["n_train"] == 300 and config["epochs"] == 1  # from the experiment's defaults
    report = (out / "report" / "report.md").read_text()
    assert "### cnn: Comparison on digits / digits-cnn" in report and "| convert | 2 |" in report
    assert "architecture and width as each step names them" in report
    seconds = json.loads((out / "cnn" / "ltl-offline" / "summary.json").read_text())["train_seconds"]
    assert json.loads((out / "reproduction.json").read_text())["train_seconds_total"] == pytest.approx(seconds)
