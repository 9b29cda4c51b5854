"""`spiketandem compare`: several rules on one setup -> run folders, table (Markdown + JSON), figures."""
import json

import pytest

from spiketandem.cli import main
from spiketandem.runs import RunFolder

FAST = ["--dataset", "digits", "--arch", "digits-cnn", "--epochs", "1", "--T", "4", "--eval-T", "4", "--quiet"]


def compare(capsys, *args) -> dict:
    assert main(["compare", *FAST, "--json", *args]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 1  # --json prints exactly one object
    return json.loads(lines[0])


def test_compare_trains_each_rule_once_and_writes_table_and_figures(tmp_path, capsys):
    out = tmp_path / "cmp"
    result = compare(capsys, "--rules", "stbp", "tet", "--sweep-rules", "stbp", "--sweep-T", "2", "4", "--out", str(out))
    assert list(result["runs"]) == ["stbp", "tet"]
    for name, row in result["runs"].items():
        summary = RunFolder(out / name).read_json("summary.json")  # a normal run folder per rule
        assert summary["rule"] == name and row["student_acc"] == summary["student_acc"]
        assert [c["test_acc"] for c in row["curve"]] == [r["test_acc"] for r in RunFolder(out / name).read_metrics()]
    # T = 2 is its own run; T = 4 is the main stbp run (same setup), not trained twice
    assert (out / "sweep" / "stbp-T2" / "summary.json").is_file() and not (out / "sweep" / "stbp-T4").exists()
    assert result["sweep"]["accuracy"]["stbp"] == {
        "2": RunFolder(out / "sweep" / "stbp-T2").read_json("summary.json")["student_acc"],
        "4": result["runs"]["stbp"]["student_acc"]}
    assert result["teacher"] is None  # no rule here needs one, so none was trained
    for key in ("markdown", "json", "fig2a", "fig3"):
        assert (out / result["files"][key].split("/")[-1]).is_file()
    table = (out / "compare.md").read_text()
    assert "| stbp | 4 | 1 |" in table and "| tet | 4 | 1 |" in table and "T = 2" in table
    assert json.loads((out / "compare.json").read_text())["runs"]["tet"]["run_dir"] == str(out / "tet")
    # a second call reuses the finished runs
    again = compare(capsys, "--rules", "stbp", "tet", "--sweep-rules", "stbp", "--sweep-T", "2", "4", "--out", str(out))
    assert again["runs"]["tet"]["student_acc"] == result["runs"]["tet"]["student_acc"]
    assert again["wall_seconds"] < result["wall_seconds"]
    assert "SynOps / teacher MACs (exact)" in table
    # another SynOps convention: the reused runs are re-counted in it, so that no table or axis mixes two
    standard = compare(capsys, "--rules", "stbp", "tet", "--sweep-rules", "stbp", "--sweep-T", "2", "4",
                       "--synops-convention", "standard", "--out", str(out))
    assert {r["synops_convention"] for r in standard["runs"].values()} == {"standard"}
    for folder in (out / "stbp", out / "tet", out / "sweep" / "stbp-T2"):
        summary = RunFolder(folder).read_json("summary.json")
        assert summary["synops_convention"] == "standard"
        assert summary["synops_ratio"] == summary["synops_ratio_by_convention"]["standard"]
    assert standard["sweep"]["synops_ratio"]["stbp"]["2"] == RunFolder(out / "sweep" / "stbp-T2").read_json(
        "summary.json")["synops_ratio"]
    assert "SynOps / teacher MACs (standard)" in (out / "compare.md").read_text()


def test_teacher_rules_share_the_given_teacher_and_eval_sweep(tmp_path, capsys, digits_teacher):
    out = tmp_path / "cmp"
    result = compare(capsys, "--rules", "ltl-offline", "stbp", "--sweep", "eval", "--sweep-rules", "ltl-offline",
                     "--sweep-T", "2", "8", "--teacher", digits_teacher, "--out", str(out))
    assert result["teacher"] == digits_teacher and result["teacher_acc"] > 0.9
    config = RunFolder(out / "ltl-offline").read_config()
    assert config["teacher"] == digits_teacher and RunFolder(out / "stbp").read_config()["teacher"] is None
    summary = RunFolder(out / "ltl-offline").read_json("summary.json")  # eval mode re-evaluates the main run
    assert result["sweep"]["accuracy"]["ltl-offline"] == {"2": summary["acc_by_T"]["2"], "8": summary["acc_by_T"]["8"]}
    assert not (out / "sweep").exists()


@pytest.mark.parametrize("args,message", [(["--rule", "stbp"], "--rules"), (["--rules", "nope"], "unknown rule"),
                                          (["--rules", "stbp", "stbp"], "twice"),
                                          (["--rules", "stbp", "--rule-lr", "tet=1e-3"], "does not train"),
                                          (["--rules", "stbp", "--rule-lr", "stbp=0"], "must be > 0"),
                                          (["--rules", "stbp", "--seeds", "1", "1"], "names a seed twice"),
                                          (["--rules", "stbp", "--seeds", "1", "--seed", "2"], "not both")])
def test_bad_requests_are_clear_errors(tmp_path, capsys, args, message):
    assert main(["compare", *FAST, "--out", str(tmp_path / "x"), "--sweep", "none", *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x" / "stbp").exists()


def test_several_seeds_are_one_run_each_reported_as_mean_and_sample_std(tmp_path, capsys, digits_teacher):
    out = tmp_path / "cmp"
    result = compare(capsys, "--rules", "ltl-offline", "stbp", "--sweep", "eval", "--sweep-rules", "ltl-offline",
                     "--sweep-T", "2", "4", "--teacher", digits_teacher, "--seeds", "3", "5", "--out", str(out))
    assert result["seeds"] == [3, 5] and not (out / "stbp").exists()
    for name, row in result["runs"].items():
        folders = [out / f"{name}-seed3", out / f"{name}-seed5"]
        summaries = [RunFolder(f).read_json("summary.json") for f in folders]
        assert [RunFolder(f).read_config()["seed"] for f in folders] == [3, 5]
        a, b = (s["student_acc"] for s in summaries)
        assert row["student_acc"] == pytest.approx((a + b) / 2)
        assert row["student_acc_std"] == pytest.approx(abs(a - b) / 2 ** 0.5)  # sample std of two values
        assert row["acc_by_seed"] == {"3": a, "5": b} and row["run_dirs"] == [str(f) for f in folders]
        curves = [RunFolder(f).read_metrics()[0]["test_acc"] for f in folders]
        assert row["curve"][0]["test_acc"] == pytest.approx(sum(curves) / 2)
    evaluated = [RunFolder(out / f"ltl-offline-seed{s}").read_json("summary.json")["acc_by_T"]["2"] for s in (3, 5)]
    assert result["sweep"]["accuracy"]["ltl-offline"]["2"] == pytest.approx(sum(evaluated) / 2)
    assert result["sweep"]["accuracy_std"]["ltl-offline"]["2"] == pytest.approx(abs(evaluated[0] - evaluated[1]) / 2 ** 0.5)
    line = next(r for r in result["table"] if r["method"] == "stbp")
    assert line["acc_std"] == result["runs"]["stbp"]["student_acc_std"] and line["seeds"] == [3, 5]
    table = (out / "compare.md").read_text()
    assert "2 seeds (3, 5)" in table
    mean, std = result["runs"]["stbp"]["student_acc"], result["runs"]["stbp"]["student_acc_std"]
    assert f"| stbp | 4 | 1 | {100 * mean:.2f} ± {100 * std:.2f}% |" in table


def test_a_malformed_rule_lr_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["compare", *FAST, "--out", str(tmp_path / "x"), "--rules", "stbp", "--rule-lr", "stbp:1e-3"])
    assert stop.value.code == 2 and "'stbp:1e-3' is not RULE=LR" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_the_front_holds_one_point_per_run_and_penalised_ltl(tmp_path, capsys, digits_teacher):
    """`--rate-penalties`: offline LTL at every window and penalty, each run one point of the accuracy-vs-SynOps
    front; rule options reach only the rules that declare them (--recipe is offline LTL's, stbp ignores it);
    `--rule-lr` sets one rule's learning rate (every offline LTL run's, the penalised ones too) over --lr."""
    out = tmp_path / "cmp"
    result = compare(capsys, "--rules", "ltl-offline", "stbp", "--sweep", "none", "--T", "2", "--eval-T", "2",
                     "--recipe", "low-latency", "--rate-penalties", "0.5", "--teacher", digits_teacher, "--out", str(out),
                     "--lr", "2e-3", "--rule-lr", "ltl-offline=5e-4")
    for folder, lr in ((out / "ltl-offline", 5e-4), (out / "front" / "ltl-offline-T2-p0.5", 5e-4), (out / "stbp", 2e-3)):
        assert RunFolder(folder).read_config()["lr"] == lr
    assert {r["method"]: r["lr"] for r in result["table"]} == {"ltl-offline": 5e-4, "stbp": 2e-3,
                                                               "ltl-offline, rate penalty 0.5": 5e-4}
    assert result["rule_lr"] == {"ltl-offline": 5e-4} and "ltl-offline 0.0005" in (out / "compare.md").read_text()
    front = {(p["method"], p["T"]): p for p in result["front"]}
    assert set(front) == {("ltl-offline", 2), ("stbp", 2), ("ltl-offline + rate penalty", 2)}
    penalised = RunFolder(out / "front" / "ltl-offline-T2-p0.5")
    assert penalised.read_config()["options"]["rate_penalty"] == 0.5
    assert front[("ltl-offline + rate penalty", 2)]["synops_ratio"] == penalised.read_json("summary.json")["synops_ratio"]
    assert "recipe" not in RunFolder(out / "stbp").read_config()["options"]
    assert (out / "front_accuracy_vs_synops.png").is_file()


def test_the_frontier_table_with_conversion_qcfs_and_quantized_teachers(tmp_path, capsys, digits_teacher):
    """The latency-energy frontier (`--quantized-teacher-epochs`): conversion runs with IF neurons and no
    epochs, qcfs's levels follow each window, offline LTL at each T learns from the teacher quantized to T
    levels, and the table gives every run's gap to the full-precision teacher, its SynOps ratio in both
    conventions and its energy ratio."""
    from spiketandem.teachers import load_teacher
    out = tmp_path / "cmp"
    rules = ["ltl-offline", "convert", "qcfs"]
    result = compare(capsys, "--rules", *rules, "--sweep-rules", *rules, "--T", "2", "--eval-T", "2", "--sweep-T",
                     "1", "2", "--recipe", "low-latency", "--quantized-teacher-epochs", "1", "--teacher", digits_teacher,
                     "--out", str(out))
    converted = RunFolder(out / "convert").read_config()
    assert (converted["neuron"], converted["epochs"], converted["teacher"]) == ("if", 0, digits_teacher)
    assert RunFolder(out / "sweep" / "qcfs-T1").read_config()["options"]["qcfs_levels"] == 1
    assert RunFolder(out / "qcfs").read_config()["options"]["qcfs_levels"] == 2
    for T, folder in ((1, out / "sweep" / "ltl-offline-T1"), (2, out / "ltl-offline")):
        used = RunFolder(folder).read_config()["teacher"]
        assert used == str(out / f"teacher-L{T}" / "teacher.pt") == result["quantized_teachers"][str(T)]["path"]
        assert load_teacher(used)[1]["act_levels"] == T
    table = {(r["method"], r["T"]): r for r in result["table"]}
    assert set(table) == {(m, T) for m in rules for T in (1, 2)}
    for row in table.values():
        summary = RunFolder(row["run_dir"]).read_json("summary.json")
        assert row["gap"] == pytest.approx(100 * (result["teacher_acc"] - summary["student_acc"]))
        assert (row["synops_exact"], row["synops_standard"]) == (summary["synops_ratio_by_convention"]["exact"],
                                                                 summary["synops_ratio_by_convention"]["standard"])
        assert row["energy_ratio"] == summary["energy"]["ratio"] and row["epochs"] == summary["epochs"]
    assert table[("convert", 2)]["epochs"] == 0
    md = (out / "compare.md").read_text()
    assert "SynOps ratio (standard)" in md and "Δ teacher (pp)" in md and "quantized to 2 levels" in md
