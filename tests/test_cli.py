"""The command line end to end on digits: run-folder contract, eval, resume, clear errors."""
import json
import subprocess
import sys

import pytest

from spiketandem.cli import main

CONTRACT_KEYS = {"rule", "dataset", "arch", "neuron", "T", "epochs", "teacher_acc", "student_acc", "acc_by_T",
                 "synops_ratio", "train_seconds", "peak_memory_bytes", "device"}


def _command_paths(parser, prefix=()):
    """Every (sub)command path of the real parser, e.g. ("bench", "neuron")."""
    import argparse
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from _command_paths(sub, prefix + (name,))


def test_the_help_test_covers_every_subcommand():
    from spiketandem.cli import build_parser
    paths = list(_command_paths(build_parser()))
    top = {p[0] for p in paths}
    assert {"demo", "teacher", "train", "eval", "bench", "report", "reproduce", "compare", "export", "noise"} <= top
    assert len(paths) >= 14


@pytest.mark.parametrize("path", [" ".join(p) for p in _command_paths(__import__("spiketandem.cli").cli.build_parser())])
def test_every_subcommand_has_help(path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(path.split() + ["--help"])
    assert stop.value.code == 0
    assert f"usage: spiketandem {path}" in " ".join(capsys.readouterr().out.split())


def test_the_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "spiketandem", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "usage: spiketandem train" in out.stdout


# ---- parsing and help: no torch, whole flag names, one-line errors, grouped help ---------------------------

# commands whose modules still import torch when their parser is built; remove a name once it is torch-free
TORCH_AT_PARSE: set[str] = set()
PARSE_ONLY = [["--help"], ["--version"], [], ["--verison"], ["trian"], ["train", "--bogus"], ["train", "--epoch", "3"],
              ["train", "--neuron", "lf"], ["train", "--T", "x"], ["teacher", "--rule", "tet"], ["eval"],
              ["compare", "--sweep", "trian"], ["report"], ["reproduce", "--bogus"], ["bench", "pipeline", "--help"],
              ["bench", "neuron", "--bogus"]]


def test_parsing_and_help_do_not_import_torch():
    """What makes `--help` and usage errors fast: building the parser, printing help and every usage error
    import neither torch nor matplotlib (torch alone takes seconds to import)."""
    from spiketandem.cli import COMMANDS
    cases = [[name, "--help"] for name in COMMANDS if name not in TORCH_AT_PARSE] + PARSE_ONLY
    code = f"""
import contextlib, io, sys
from spiketandem import cli
cli.build_parser({sorted(set(COMMANDS) - TORCH_AT_PARSE)!r})
for argv in {cases!r}:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            cli.main(argv)
        except SystemExit:
            pass
    heavy = sorted(m for m in ("torch", "matplotlib") if m in sys.modules)
    if heavy:
        sys.exit(f"{{' '.join(argv)!r}} imported {{', '.join(heavy)}}")
print("torch-free")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "torch-free", out.stderr + out.stdout


def _fails(argv, capsys) -> str:
    """The stderr of a usage error (exit 2), checked to be one line `spiketandem: error: ...`."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("spiketandem: error: ") and not captured.out, captured.err
    return lines[0]


def test_abbreviated_flags_are_refused_with_the_flag_meant(capsys):
    assert _fails(["train", "--epoch", "3"], capsys) == \
        "spiketandem: error: train: unrecognized arguments --epoch 3; did you mean --epochs?"
    assert "did you mean --kd-temperature?" in _fails(["train", "--kd-temp", "2"], capsys)
    assert "did you mean --seed (for --sed), --lr (for --lrr)?" in _fails(["train", "--sed", "1", "--lrr=2"], capsys)
    assert "did you mean --version?" in _fails(["--verison"], capsys)
    assert "`spiketandem train --help` lists the flags" in _fails(["train", "--bogus"], capsys)
    assert "eval: unrecognized argument --sweep" in _fails(["eval", "RUN", "--sweep"], capsys)  # not --sweep-T
    from spiketandem.cli import build_parser
    parsers = [build_parser()]
    while parsers:  # every parser, nested ones included, refuses abbreviations
        parser = parsers.pop()
        assert parser.allow_abbrev is False, parser.prog
        parsers += [sub for a in parser._actions if a.choices and hasattr(a, "_name_parser_map")
                    for sub in a.choices.values()]


def test_unknown_choices_and_commands_name_the_nearest(capsys):
    assert _fails(["train", "--neuron", "lf"], capsys) == ("spiketandem: error: train: argument --neuron: invalid "
                                                           "choice 'lf' (choose from if, lif); did you mean lif?")
    assert "did you mean ltl-offline?" in _fails(["train", "--rule", "ltl-ofline"], capsys)
    assert "did you mean train?" in _fails(["trian", "--epochs", "2"], capsys)
    assert "did you mean batch?" in _fails(["train", "--ynorm", "bath"], capsys)  # a rule option's choices
    assert "invalid int value: 'x'" in _fails(["train", "--T", "x"], capsys)
    assert "the following arguments are required: COMMAND" in _fails([], capsys)


def test_version_is_the_package_version(capsys):
    import spiketandem
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == f"spiketandem {spiketandem.__version__}"


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit):
        main(argv + ["--help"])
    return capsys.readouterr().out


def test_train_help_is_grouped_with_readable_metavars_and_defaults(capsys):
    from spiketandem.config import RunConfig
    from spiketandem.rules import CATALOG, all_options
    text = _help(["train"], capsys)
    titles = [line[:-1] for line in text.splitlines() if line and not line.startswith(" ") and line.endswith(":")]
    common = ["options", "run", "data", "model", "optimisation", "spiking student"]
    assert titles[:len(common)] == common  # the common flags first, then the rules'
    rule_groups = titles[len(common):]
    assert rule_groups and all(t.startswith(("options of --rule ", "options shared by --rule ")) for t in rule_groups)
    assert "options of --rule tet" in rule_groups and "options shared by --rule ltl-offline, ltl-online" in rule_groups
    flags = [line.split()[0].rstrip(",") for line in text.splitlines() if line.startswith("  --")]
    assert len(flags) == len(set(flags))  # every flag once, shared rule options included
    assert {o.flag for o in all_options().values()} <= set(flags)
    for opt in all_options().values():  # each option under the group of exactly the rules that declare it
        users = [name for name, entry in CATALOG.items() if entry.option_named(opt.name)]
        title = f"options of --rule {users[0]}" if len(users) == 1 else f"options shared by --rule {', '.join(users)}"
        group = text.split(f"\n{title}:\n", 1)[1].split("\n\n", 1)[0]
        assert f"  {opt.flag}" in group, (opt.name, title)
    assert "OPTION_" not in text and "usage: spiketandem train [options]" in text
    for shown in ("--epochs N", "--lr LR", "--T N", "--online-warmup FRACTION", "--tet-lambda FRACTION",
                  "--dspike-fd-batch N", "--neuron {if,lif}", "--rule RULE", "--overwrite", "--out DIR"):
        assert shown in text, shown
    flat = " ".join(text.split())
    defaults = RunConfig()
    assert f"time window (steps) for training (default: {defaults.T})" in flat
    assert f"(default: {' '.join(map(str, defaults.eval_T))})" in flat
    assert f"(default: {defaults.rule})" in flat and f"(default: {defaults.lr_schedule})" in flat
    assert "learning rate (default: the rule's own" in flat  # None: decided by the rule
    assert "(in [0, 1); default: 0.75)" in flat  # --online-warmup: its range and its default


def test_the_help_names_every_dataset_and_architecture(capsys):
    """The --dataset and --arch help lists names (their registries import torch); they must stay complete."""
    from spiketandem.data.registry import DATASETS, default_arch
    from spiketandem.models import MODELS
    dataset_help, arch_help = (" ".join(_help(["train"], capsys).split(f"--{flag} NAME", 1)[1].split("\n  --", 1)[0]
                                        .split()) for flag in ("dataset", "arch"))
    assert all(name in dataset_help for name in DATASETS), dataset_help
    assert all(name in arch_help for name in MODELS), arch_help
    assert "digits-cnn for digits and fashion-mnist, else vgg11" in arch_help
    assert {name: default_arch(name) for name in DATASETS} == {
        name: "digits-cnn" if name in ("digits", "fashion-mnist") else "vgg11" for name in DATASETS}


def test_demo_and_teacher_help_show_their_own_defaults(capsys):
    from spiketandem.commands import DEMO_CONFIG
    demo = " ".join(_help(["demo"], capsys).split())
    assert f"time window (steps) for training (default: {DEMO_CONFIG['T']})" in demo
    assert f"(default: {DEMO_CONFIG['teacher_epochs']})" in demo and f"(default: {DEMO_CONFIG['arch']})" in demo
    teacher = " ".join(_help(["teacher"], capsys).split())
    assert "the teacher recipe's" in teacher and "--rule" not in teacher and "--tet-lambda" not in teacher
    assert "--overwrite start again in an existing run folder: removes only the files a run writes" in teacher


def test_flags_reach_the_config(capsys):
    from spiketandem.cli import build_parser
    from spiketandem.run_flags import config_from_args
    args = build_parser(["train"]).parse_args(["train", "--rule", "tet", "--tet-lambda", "0.1", "--no-tdbn",
                                               "--epochs", "3", "--T", "4"])
    cfg = config_from_args(args)
    assert (cfg.rule, cfg.epochs, cfg.T, cfg.options) == ("tet", 3, 4, {"tet_lambda": 0.1, "tdbn": False})


@pytest.mark.parametrize("command", ["train", "teacher", "demo"])
def test_overwrite_is_passed_to_the_pipeline(command, monkeypatch, tmp_path):
    import spiketandem.workflow as workflow
    seen = {}

    def fake_train(cfg, run, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt  # stop before anything is trained or reported
    monkeypatch.setattr(workflow, "train_student", fake_train)
    monkeypatch.setattr(workflow, "train_teacher", fake_train)
    assert main([command, "--out", str(tmp_path / "run"), "--overwrite", "--quiet"]) == 130
    assert seen["overwrite"] is True and seen["resume"] is False
    assert main([command, "--out", str(tmp_path / "run"), "--resume", "--quiet"]) == 130
    assert seen["overwrite"] is False and seen["resume"] is True


def test_the_demo_starts_its_ltl_membranes_at_half_the_threshold_and_no_other_rules(monkeypatch, tmp_path):
    import spiketandem.workflow as workflow
    seen = []

    def fake_train(cfg, run, **kwargs):
        seen.append(cfg.options)
        raise KeyboardInterrupt
    monkeypatch.setattr(workflow, "train_student", fake_train)
    for rule in ([], ["--rule", "stbp"], ["--membrane-init", "0"]):
        assert main(["demo", "--out", str(tmp_path / "run"), "--quiet", *rule]) == 130
    assert seen == [{"membrane_init": 0.5}, {}, {"membrane_init": 0.0}]


def test_demo_writes_the_run_folder_contract(tmp_path, capsys):
    run = tmp_path / "demo"
    assert main(["demo", "--out", str(run), "--quiet", "--epochs", "2", "--teacher-epochs", "12", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "student.pt", "teacher.pt", "learning_curve.png",
                 "report/report.md", "report/report.html"):
        assert (run / name).is_file(), name
    summary = json.loads((run / "summary.json").read_text())
    assert CONTRACT_KEYS <= set(summary) and printed["student_acc"] == summary["student_acc"]
    assert summary["rule"] == "ltl-offline" and summary["dataset"] == "digits" and summary["T"] == 8
    assert set(summary["acc_by_T"]) == {"2", "4", "8", "16", "32"}
    assert all(0 <= a <= 1 for a in summary["acc_by_T"].values())
    assert summary["teacher_acc"] > 0.9 and summary["student_acc"] > 0.9
    assert summary["acc_by_T"]["2"] > 0.8  # membranes from theta/2: the shortest window works too
    assert 0 < summary["synops_ratio"] < 10
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert {"train_loss", "train_acc", "test_acc", "lr", "ce", "local"} <= set(rows[0])

    assert main(["eval", str(run), "--eval-T", "4", "8", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert set(evaluated["acc_by_T"]) == {"4", "8"}
    assert evaluated["acc_by_T"]["8"] == pytest.approx(summary["acc_by_T"]["8"])


def test_a_killed_run_resumes_bit_identically(tmp_path, digits_teacher):
    """kill -9 a real training process after its first checkpoint, `--resume`: the same weights, bit for bit,
    as the run that was never interrupted, and every epoch once in metrics.jsonl."""
    import os
    import signal
    import time

    import torch
    args = ["train", "--teacher", digits_teacher, "--arch", "digits-cnn", "--T", "4", "--eval-T", "4",
            "--epochs", "3", "--n-train", "600", "--quiet", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    subprocess.run([sys.executable, "-m", "spiketandem", *args, "--out", str(whole)], check=True, env=env,
                   capture_output=True)
    process = subprocess.Popen([sys.executable, "-m", "spiketandem", *args, "--out", str(cut)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = cut / "checkpoint.pt"
    while process.poll() is None and not checkpoint.is_file():  # the first epoch's checkpoint
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert checkpoint.is_file(), "the run ended before its first checkpoint"
    done = torch.load(checkpoint, weights_only=True)["epoch"]
    assert done < 3, "the run finished before it was killed; nothing was tested"
    subprocess.run([sys.executable, "-m", "spiketandem", *args, "--out", str(cut), "--resume"], check=True, env=env,
                   capture_output=True)
    a = torch.load(whole / "student.pt", weights_only=True)["state"]["model"]
    b = torch.load(cut / "student.pt", weights_only=True)["state"]["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(line) for line in (cut / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]


def test_bad_input_gets_one_clear_error(tmp_path, digits_teacher, capsys):
    assert main(["train", "--dataset", "imagenet-9000", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "imagenet-9000" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nothing-here")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochz: 3\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "y"), "--quiet"]) == 2
    assert "epochz" in capsys.readouterr().err
    assert main(["train", "--teacher", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "z"), "--quiet"]) == 2
    assert "missing.pt" in capsys.readouterr().err


def test_act_clip_that_contradicts_the_given_teacher_is_refused(tmp_path, digits_teacher, capsys):
    assert main(["train", "--teacher", digits_teacher, "--act-clip", "2", "--epochs", "1",
                 "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "act_clip=None" in err and "drop --act-clip" in err


def test_corrupt_model_file_is_reported(tmp_path, digits_teacher, capsys):
    run = tmp_path / "run"
    assert main(["train", "--teacher", digits_teacher, "--arch", "digits-cnn", "--T", "2", "--eval-T", "2",
                 "--epochs", "1", "--out", str(run), "--quiet"]) == 0
    (run / "student.pt").write_bytes(b"not a checkpoint")
    assert main(["eval", str(run)]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_clipped_teacher_is_trained_saved_and_loaded_with_its_clip(tmp_path, capsys):
    from torch import nn
    from spiketandem.teachers import load_teacher
    out = tmp_path / "t"
    assert main(["teacher", "--dataset", "digits", "--arch", "digits-mlp", "--epochs", "3", "--act-clip", "1.5",
                 "--out", str(out), "--quiet", "--json"]) == 0
    teacher, saved = load_teacher(out)
    clips = [m for m in teacher.modules() if isinstance(m, nn.Hardtanh)]
    assert saved["act_clip"] == 1.5 and clips and all((m.min_val, m.max_val) == (0.0, 1.5) for m in clips)
    assert not any(isinstance(m, nn.ReLU) for m in teacher.modules())
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["teacher_acc"] > 0.8
