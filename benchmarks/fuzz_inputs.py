"""Fuzz spiketandem's input checks: invalid values (CLI flags, YAML files, the Python API), damaged or
wrong-kind run files, and outputs that cannot be written.  Each case runs in-process
(``spiketandem.cli.main(argv)`` with stdout/stderr captured, or ``spiketandem.api.train(...)``) in a
fresh working folder, and is classified as

- ``clear``:     exit code 2 (API: a ``SpiketandemError``), exactly one line on stderr, of the form
                 ``spiketandem: error: ...`` (argparse's own ``spiketandem CMD: error: ...`` after its usage
                 lines also counts), no traceback, and nothing in the working folder changed (for value
                 and file cases: compared byte for byte before and after); value cases must also name
                 the field and the value;
- ``vague``:     one clear-looking line, but it names neither the field nor the value;
- ``late``:      a clear line, but only after files were written or changed (training had started);
- ``traceback``: a Python exception reached the user (or the API raised something else);
- ``silent``:    exit code 0 / no exception: the bad input was accepted.

    python benchmarks/fuzz_inputs.py --label before            # all cases; writes the JSON + markdown
    python benchmarks/fuzz_inputs.py --only files -k student -v  # a subset, with each case's stderr

Results: ``benchmarks/results/fuzz_inputs.json`` (one object with a ``rows`` list, one row per case,
and ``tables``: label -> group -> counts) and ``fuzz_inputs.md``.  Each label (``before``, ``after``)
keeps its own table, so one file holds the before/after comparison.

Cases are cheap: every valid part of an argv is digits, ``--epochs 1 --teacher-epochs 1 --n-train 200
--n-test 100 --T 2 --eval-T 2``, so a case that wrongly starts training ends within seconds.
``tests/test_bad_input.py`` imports this file and runs the same cases under pytest.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import io
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

CHEAP = ["--dataset", "digits", "--epochs", "1", "--n-train", "200", "--n-test", "100", "--quiet"]
CHEAP_TRAIN = CHEAP + ["--teacher-epochs", "1", "--T", "2", "--eval-T", "2"]
CHEAP_YAML = {"dataset": "digits", "epochs": 1, "teacher_epochs": 1, "n_train": 200, "n_test": 100, "T": 2,
              "eval_T": [2], "progress": False, "out": "run"}
KINDS = ("clear", "vague", "late", "traceback", "silent", "skipped")
ERROR_LINE = re.compile(r"^spiketandem(?: [\w-]+)?: error: ")


# ---- cases ---------------------------------------------------------------------------------------

@dataclass
class Case:
    id: str
    group: str                      # values | files | outputs
    source: str                     # flag | yaml | api | eval | resume | report | teacher-flag | ...
    field: str | None = None        # the field/flag the message must name (values)
    value: str | None = None        # the value's text the message must show (values)
    argv: list | None = None        # CLI cases: argv, with {run} replaced by the run folder
    yaml: str | None = None         # YAML cases: the config file's text (argv gets --config cfg.yaml)
    api: dict | None = None         # API cases: keyword arguments of api.train
    damage: Callable | None = None  # file/output cases: damage(workdir, fixtures) before the command
    needs_run: bool = False         # copy the trained base run into workdir/run first
    env: str | None = None          # outputs: "readonly" | "fulldisk" | "smalldisk" (where the command writes)
    real_fs: bool = False           # the write happens in C (h5py): patched Python writes cannot stop it
    note: str = ""


def _names(field_name: str) -> list[str]:
    return sorted({field_name, field_name.replace("_", "-")})


def value_cases() -> list[Case]:
    cases: list[Case] = []

    def flag(bad: list, field_name: str, value: str, cmd: str = "train", rule: str | None = None, out: bool = True):
        base = CHEAP_TRAIN if cmd == "train" else CHEAP
        extra = (["--out", "run"] if out else []) + (["--rule", rule] if rule else [])
        cid = f"{cmd}{'-' + rule if rule else ''} {' '.join(bad)}"
        cases.append(Case(cid, "values", "flag", field_name, value, argv=[cmd, *base, *extra, *bad]))

    # optimisation
    for v in ("nan", "inf", "0", "-0.1"):
        flag(["--lr", v], "lr", v)
    flag(["--lr=-inf"], "lr", "-inf")  # "--lr -inf" would be argparse's: -inf looks like a flag
    for v in ("-1", "nan", "inf"):
        flag(["--weight-decay", v], "weight_decay", v)
    flag(["--seed", "-1"], "seed", "-1")
    flag(["--epochs", "-1"], "epochs", "-1")
    for v in ("0", "-3"):
        flag(["--teacher-epochs", v], "teacher_epochs", v)
    for v in ("0", "-8"):
        flag(["--batch-size", v], "batch_size", v)
    # student
    for v in ("0", "-2"):
        flag(["--T", v], "T", v)
    flag(["--eval-T", "0"], "eval_T", "0")
    flag(["--eval-T", "-4"], "eval_T", "-4")
    flag(["--eval-T", "2", "0"], "eval_T", "0")
    # data
    for v in ("0", "-5"):
        flag(["--n-train", v], "n_train", v)
    for v in ("0", "-1"):
        flag(["--n-test", v], "n_test", v)
    for v in ("0", "-1"):
        flag(["--event-size", v], "event_size", v)
    flag(["--dataset", "mnist-nope"], "dataset", "mnist-nope")
    flag(["--arch", "vgg99"], "arch", "vgg99")
    flag(["--name", ".."], "name", "..", out=False)  # runs/.. is the working folder itself
    flag(["--name", "{work}/elsewhere"], "name", "elsewhere", out=False)  # runs/ABSOLUTE is ABSOLUTE
    flag(["--device", "tpu"], "device", "tpu")
    flag(["--device", "cuda:99"], "device", "cuda:99")
    # model
    for v in ("0", "-0.5", "nan", "inf"):
        flag(["--width", v], "width", v)
    for v in ("0", "-1", "nan"):
        flag(["--act-clip", v], "act_clip", v)
    # neuron
    for v in ("0", "-1", "nan", "inf"):
        flag(["--threshold", v], "threshold", v)
    for v in ("0", "-5", "nan"):
        flag(["--tau-m", v], "tau_m", v)
    for v in ("0", "1.5", "-0.2", "nan"):
        flag(["--leak", v], "leak", v)
    for v in ("0", "-1", "nan"):
        flag(["--surrogate-param", v], "surrogate_param", v)
    for v in ("0", "101", "nan", "-5"):
        flag(["--percentile", v], "percentile", v)
    # rule options
    for v in ("-1", "nan", "inf"):
        flag(["--kd", v], "kd", v)
    flag(["--kd-temperature", "0"], "kd_temperature", "0")
    flag(["--online-warmup", "1.0"], "online_warmup", "1.0", rule="ltl-online")
    flag(["--online-warmup", "-0.1"], "online_warmup", "-0.1", rule="ltl-online")
    flag(["--online-warmup-steps", "-1"], "online_warmup_steps", "-1", rule="ltl-online")
    flag(["--online-warmup-steps", "5"], "online_warmup_steps", "5", rule="ltl-online")  # >= T = 2
    flag(["--tet-lambda", "2"], "tet_lambda", "2", rule="tet")
    flag(["--tet-lambda", "-0.5"], "tet_lambda", "-0.5", rule="tet")
    flag(["--tet-phi", "-1"], "tet_phi", "-1", rule="tet")
    flag(["--dspike-b", "0"], "dspike_b", "0", rule="dspike")
    flag(["--dspike-fd-batch", "0"], "dspike_fd_batch", "0", rule="dspike")
    flag(["--ptl-patience", "0"], "ptl_patience", "0", rule="ptl")
    flag(["--ptl-val-fraction", "1"], "ptl_val_fraction", "1", rule="ptl")
    flag(["--membrane-init", "1"], "membrane_init", "1", rule="convert")
    flag(["--qcfs-levels", "0"], "qcfs_levels", "0", rule="qcfs")
    flag(["--qcfs-shift", "-0.5"], "qcfs_shift", "-0.5", rule="qcfs")
    flag(["--neuron", "lif"], "neuron", "lif", rule="qcfs")  # conversion rules run IF neurons only
    flag(["--neuron", "lif"], "neuron", "lif", rule="ptl")
    flag(["--decolle-burnin", "-1"], "decolle_burnin", "-1", rule="decolle")
    flag(["--decolle-burnin", "5"], "decolle_burnin", "5", rule="decolle")  # >= T = 2
    flag(["--voting", "-1"], "voting", "-1", rule="stbp")
    flag(["--tdbn-alpha", "0"], "tdbn_alpha", "0", rule="stbp")
    flag(["--neunorm", "--neunorm-k", "1.5"], "neunorm_k", "1.5", rule="stbp")
    flag(["--neunorm", "--neunorm-v", "-1"], "neunorm_v", "-1", rule="stbp")
    flag(["--shortcut-lambda", "-1"], "shortcut_lambda", "-1", rule="shortcut")
    flag(["--shortcut-layers", ","], "shortcut_layers", ",", rule="shortcut")
    flag(["--init-rate", "1.5"], "init_rate", "1.5", rule="stbp")
    flag(["--tet-lambda", "0.5"], "tet_lambda", "ltl-offline")  # an option of another rule
    # the teacher command
    for bad, f, v in ((["--lr", "nan"], "lr", "nan"), (["--lr", "inf"], "lr", "inf"), (["--epochs", "-1"], "epochs", "-1"),
                      (["--width", "0"], "width", "0"), (["--n-test", "0"], "n_test", "0"),
                      (["--batch-size", "0"], "batch_size", "0"), (["--seed", "-1"], "seed", "-1"),
                      (["--weight-decay", "-1"], "weight_decay", "-1"), (["--act-clip", "-2"], "act_clip", "-2")):
        flag(bad, f, v, cmd="teacher")

    # eval / noise flags on a trained run
    def on_run(cid: str, argv: list, field_name: str, value: str):
        cases.append(Case(cid, "values", "eval", field_name, value, argv=argv, needs_run=True))
    on_run("eval --eval-T 0", ["eval", "{run}", "--eval-T", "0", "--quiet"], "eval_T", "0")
    on_run("eval --eval-T -1", ["eval", "{run}", "--eval-T", "-1", "--quiet"], "eval_T", "-1")
    on_run("eval --eval-T 2 0", ["eval", "{run}", "--eval-T", "2", "0", "--quiet"], "eval_T", "0")
    on_run("eval --sweep-T 0", ["eval", "{run}", "--sweep-T", "0", "--quiet"], "sweep_T", "0")
    on_run("eval --mac-pj -1", ["eval", "{run}", "--mac-pj", "-1", "--quiet"], "mac_pj", "-1")
    on_run("eval --mac-pj nan", ["eval", "{run}", "--mac-pj", "nan", "--quiet"], "mac_pj", "nan")
    on_run("eval --ac-pj inf", ["eval", "{run}", "--ac-pj", "inf", "--quiet"], "ac_pj", "inf")
    on_run("eval --device tpu", ["eval", "{run}", "--device", "tpu", "--quiet"], "device", "tpu")
    on_run("noise --calibrate-epochs -1", ["noise", "{run}", "--kind", "mismatch", "--levels", "0.1",
                                           "--calibrate-epochs", "-1", "--quiet"], "calibrate_epochs", "-1")
    on_run("noise --levels nan", ["noise", "{run}", "--kind", "mismatch", "--levels", "nan", "--calibrate-epochs",
                                  "0", "--quiet"], "levels", "nan")

    # YAML config files: every field in the file (argv: train --config cfg.yaml)
    def yml(cid: str, text: str, field_name: str, value: str):
        cases.append(Case(f"yaml {cid}", "values", "yaml", field_name, value, yaml=text,
                          argv=["train", "--config", "cfg.yaml", "--quiet"]))

    def yml_field(key: str, text_value: str, value: str | None = None):
        body = dict(CHEAP_YAML)
        body.pop(key, None)
        lines = [f"{k}: {json.dumps(v)}" for k, v in body.items()] + [f"{key}: {text_value}"]
        yml(f"{key}: {text_value}", "\n".join(lines) + "\n", key, value if value is not None else text_value)
        if key == "progress":  # --quiet would override the file's value
            cases[-1].argv = ["train", "--config", "cfg.yaml"]

    for key, text_value, value in (
            ("T", "4.5", None), ("T", '"8"', "8"), ("T", "true", "True"), ("T", "null", "None"), ("T", "0", None),
            ("epochs", "1.5", None), ("epochs", "five", None), ("batch_size", "[64]", "[64]"),
            ("seed", "-1", None), ("seed", "1.5", None), ("seed", "true", "True"),
            ("lr", "fast", None), ("lr", ".nan", "nan"), ("lr", ".inf", "inf"), ("lr", "-1", None), ("lr", "true", "True"),
            ("weight_decay", "-0.1", None), ("width", "0", None), ("width", "half", None), ("threshold", "-1", None),
            ("tau_m", "0", None), ("leak", "2", None), ("percentile", "200", None),
            ("eval_T", "[2, 0]", "0"), ("eval_T", "[2.5]", "2.5"), ("eval_T", '"2,4"', "2,4"), ("eval_T", "[]", "[]"),
            ("eval_T", "[true]", "True"), ("milestones", "[0.9, 0.3]", "[0.9, 0.3]"), ("milestones", "[1.5]", "1.5"),
            ("milestones", "0.3", None), ("milestones", "[-0.1]", "-0.1"), ("act_clip", "-2", None),
            ("event_size", "0", None), ("n_train", "0", None), ("n_train", "2.5", None), ("n_test", "-3", None),
            ("rule", "nope", None), ("neuron", "izhikevich", None), ("surrogate", "foo", None), ("reset", "none", "None"),
            ("init", "xavier", None), ("encoding", "poisson", None), ("lr_schedule", "linear", None),
            ("optimizer", "lbfgs", None), ("amp", "fp16", None), ("bins", "x", None), ("neuron_backend", "cuda", None),
            ("progress", '"yes"', "yes"), ("detach_reset", "1", None), ("download", '"no"', "no"),
            ("channels_last", "2", None), ("tensorboard", '"on"', "on"), ("device", "5", None), ("name", "5", None),
            ("dataset", "5", None), ("arch", "7", None), ("data_dir", "[1]", "[1]"), ("teacher", "3", None),
            ("out", "[]", "[]"), ("kd", "high", None), ("kd", "-1", None), ("options", "[1, 2]", "[1, 2]"),
            ("unknown_key", "3", "unknown_key")):
        yml_field(key, text_value, value)
    yml("options: {kd: -1}", "\n".join(f"{k}: {json.dumps(v)}" for k, v in CHEAP_YAML.items()) + "\noptions: {kd: -1}\n",
        "kd", "-1")
    yml("non-string key", "\n".join(f"{k}: {json.dumps(v)}" for k, v in CHEAP_YAML.items()) + "\n1: 2\n", "1", "1")
    yml("not a mapping", "- T: 2\n- epochs: 1\n", "cfg.yaml", "list")
    yml("broken syntax", "T: [2\nepochs: 1\n", "cfg.yaml", "cfg.yaml")
    cases.append(Case("train --config missing.yaml", "values", "flag", "missing.yaml", "missing.yaml",
                      argv=["train", "--config", "missing.yaml", "--quiet"]))
    cases.append(Case("train --config a-folder", "values", "flag", "cfg-dir", "cfg-dir",
                      argv=["train", "--config", "cfg-dir", "--quiet"],
                      damage=lambda work, fx: (work / "cfg-dir").mkdir()))

    # the Python API: spiketandem.api.train("ltl-offline", data, teacher=..., T=2, epochs=1, out=..., **bad)
    def api(cid: str, kwargs: dict, field_name: str, value: str):
        cases.append(Case(f"api {cid}", "values", "api", field_name, value, api=kwargs))
    nan, inf = float("nan"), float("inf")
    for cid, kwargs, f, v in (
            ("T=0", {"T": 0}, "T", "0"), ("T=2.5", {"T": 2.5}, "T", "2.5"), ("T='8'", {"T": "8"}, "T", "8"),
            ("T=True", {"T": True}, "T", "True"), ("epochs=-1", {"epochs": -1}, "epochs", "-1"),
            ("lr=nan", {"lr": nan}, "lr", "nan"), ("lr=inf", {"lr": inf}, "lr", "inf"), ("lr=-1", {"lr": -1.0}, "lr", "-1"),
            ("batch_size=0", {"batch_size": 0}, "batch_size", "0"), ("seed=-1", {"seed": -1}, "seed", "-1"),
            ("weight_decay=-1", {"weight_decay": -1.0}, "weight_decay", "-1"), ("kd=-1", {"kd": -1.0}, "kd", "-1"),
            ("tau_m=0", {"tau_m": 0.0}, "tau_m", "0"), ("leak=1.5", {"leak": 1.5}, "leak", "1.5"),
            ("eval_T=[0]", {"eval_T": [0]}, "eval_T", "0"), ("threshold=nan", {"threshold": nan}, "threshold", "nan"),
            ("bogus_kw=1", {"bogus_kw": 1}, "bogus_kw", "bogus_kw"), ("neuron='x'", {"neuron": "x"}, "neuron", "x"),
            ("percentile=0", {"percentile": 0.0}, "percentile", "0"),
            ("surrogate_param=-1", {"surrogate_param": -1.0}, "surrogate_param", "-1"),
            ("milestones=[2]", {"milestones": [2.0]}, "milestones", "2"), ("device='tpu'", {"device": "tpu"}, "device", "tpu"),
            ("lr_schedule='x'", {"lr_schedule": "x"}, "lr_schedule", "x"), ("reset=0", {"reset": 0}, "reset", "0")):
        api(cid, kwargs, f, v)
    return cases


# ---- damaged run files ---------------------------------------------------------------------------

def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(random.Random(0).randbytes(4096))


def _write(path: Path, text: str | bytes) -> None:
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def _torch_save(path: Path, obj) -> None:
    import torch
    torch.save(obj, path)


def _edit_model(path: Path, edit) -> None:
    import torch
    obj = torch.load(path, weights_only=True)
    edit(obj)
    torch.save(obj, path)


def _bad_config(obj):
    obj["config"]["T"] = -1


def _wrong_shape(obj):
    state = obj["state"]["model"] if "model" in obj["state"] else obj["state"]
    key = next(k for k, v in state.items() if hasattr(v, "dim") and v.dim() >= 2)
    state[key] = state[key][..., :1].clone()


def _missing_key(obj):
    state = obj["state"]["model"] if "model" in obj["state"] else obj["state"]
    state.pop(next(k for k, v in state.items() if hasattr(v, "dim") and v.dim() >= 2))


def _teacher_missing_key(obj):
    obj["state_dict"].pop(next(iter(obj["state_dict"])))


def _teacher_other_info(obj):
    obj["info"]["num_classes"] = 100


def _fill_disk(folder: Path) -> None:
    """Fill the file system holding ``folder`` (a small tmpfs) to the last byte."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for chunk in (1 << 16, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)


def file_cases() -> list[Case]:
    cases: list[Case] = []
    eval_argv = ["eval", "{run}", "--eval-T", "2", "--quiet"]
    resume_argv = ["train", *CHEAP_TRAIN, "--out", "{run}", "--resume"]

    def case(cid, source, damage, argv, note=""):
        cases.append(Case(cid, "files", source, argv=argv, damage=damage, needs_run=True, note=note))

    r = lambda work: work / "run"  # noqa: E731
    for what, argv in (("eval", eval_argv),):
        case(f"{what}: student.pt truncated", what, lambda w, fx: _truncate(r(w) / "student.pt"), argv)
        case(f"{what}: student.pt garbage", what, lambda w, fx: _garbage(r(w) / "student.pt"), argv)
        case(f"{what}: student.pt empty", what, lambda w, fx: _write(r(w) / "student.pt", b""), argv)
        case(f"{what}: student.pt is a teacher.pt", what,
             lambda w, fx: shutil.copyfile(r(w) / "teacher.pt", r(w) / "student.pt"), argv)
        case(f"{what}: student.pt is a checkpoint.pt", what,
             lambda w, fx: shutil.copyfile(r(w) / "checkpoint.pt", r(w) / "student.pt"), argv)
        case(f"{what}: student.pt holds a list", what, lambda w, fx: _torch_save(r(w) / "student.pt", [1, 2]), argv)
        case(f"{what}: student.pt has only a format key", what,
             lambda w, fx: _torch_save(r(w) / "student.pt", {"format": _model_format()}), argv)
        case(f"{what}: student.pt names an unknown rule", what,
             lambda w, fx: _edit_model(r(w) / "student.pt", lambda o: o.__setitem__("rule", "nope")), argv)
        case(f"{what}: student.pt stored config T=-1", what,
             lambda w, fx: _edit_model(r(w) / "student.pt", _bad_config), argv)
        case(f"{what}: student.pt state of the wrong shape", what,
             lambda w, fx: _edit_model(r(w) / "student.pt", _wrong_shape), argv)
        case(f"{what}: student.pt state missing a weight", what,
             lambda w, fx: _edit_model(r(w) / "student.pt", _missing_key), argv)
        case(f"{what}: student.pt info is not a mapping", what,
             lambda w, fx: _edit_model(r(w) / "student.pt", lambda o: o.__setitem__("info", [10, 1, 8])), argv)
        case(f"{what}: student.pt missing", what, lambda w, fx: (r(w) / "student.pt").unlink(), argv)
        case(f"{what}: student.pt is a folder", what,
             lambda w, fx: ((r(w) / "student.pt").unlink(), (r(w) / "student.pt").mkdir()), argv)
        case(f"{what}: config.yaml empty", what, lambda w, fx: _write(r(w) / "config.yaml", ""), argv)
        case(f"{what}: config.yaml broken YAML", what, lambda w, fx: _write(r(w) / "config.yaml", "rule: [ltl\n  T: :\n"),
             argv)
        case(f"{what}: config.yaml holds a list", what, lambda w, fx: _write(r(w) / "config.yaml", "- 1\n- 2\n"), argv)
        case(f"{what}: config.yaml binary garbage", what, lambda w, fx: _garbage(r(w) / "config.yaml"), argv)
        case(f"{what}: config.yaml missing", what, lambda w, fx: (r(w) / "config.yaml").unlink(), argv)
        case(f"{what}: summary.json broken JSON", what, lambda w, fx: _write(r(w) / "summary.json", '{"rule": "ltl'),
             argv)
        case(f"{what}: summary.json empty", what, lambda w, fx: _write(r(w) / "summary.json", ""), argv)
        case(f"{what}: summary.json holds a list", what, lambda w, fx: _write(r(w) / "summary.json", "[1, 2]\n"), argv)
        case(f"{what}: summary.json binary garbage", what, lambda w, fx: _garbage(r(w) / "summary.json"), argv)
        case(f"{what}: teacher.pt truncated", what, lambda w, fx: _truncate(r(w) / "teacher.pt"), argv)
        case(f"{what}: teacher.pt is a student.pt", what,
             lambda w, fx: shutil.copyfile(r(w) / "student.pt", r(w) / "teacher.pt"), argv)
        case(f"{what}: teacher.pt for another dataset", what,
             lambda w, fx: _edit_model(r(w) / "teacher.pt", _teacher_other_info), argv)
        case(f"{what}: teacher.pt missing a weight", what,
             lambda w, fx: _edit_model(r(w) / "teacher.pt", _teacher_missing_key), argv)
    case("eval: RUN_DIR is a file", "eval", None, ["eval", "{run}/summary.json", "--quiet"])
    case("eval: RUN_DIR is an empty folder", "eval", lambda w, fx: (w / "empty").mkdir(), ["eval", "empty", "--quiet"])
    # --resume
    case("resume: checkpoint.pt truncated", "resume", lambda w, fx: _truncate(r(w) / "checkpoint.pt"), resume_argv)
    case("resume: checkpoint.pt garbage", "resume", lambda w, fx: _garbage(r(w) / "checkpoint.pt"), resume_argv)
    case("resume: checkpoint.pt is a student.pt", "resume",
         lambda w, fx: shutil.copyfile(r(w) / "student.pt", r(w) / "checkpoint.pt"), resume_argv)
    case("resume: metrics.jsonl broken line", "resume",
         lambda w, fx: _write(r(w) / "metrics.jsonl", (r(w) / "metrics.jsonl").read_text() + '{"epoch": 2, "lo\n'),
         resume_argv)
    case("resume: metrics.jsonl row not an object", "resume",
         lambda w, fx: _write(r(w) / "metrics.jsonl", "[1, 2]\n"), resume_argv)
    case("resume: config.yaml broken YAML", "resume", lambda w, fx: _write(r(w) / "config.yaml", "rule: [\n"),
         resume_argv)
    case("resume: config.yaml empty", "resume", lambda w, fx: _write(r(w) / "config.yaml", ""), resume_argv)
    case("resume: teacher/teacher.pt truncated", "resume",
         lambda w, fx: _truncate(r(w) / "teacher" / "teacher.pt"), resume_argv)
    case("resume: teacher/checkpoint.pt garbage, no teacher.pt", "resume",
         lambda w, fx: ((r(w) / "teacher" / "teacher.pt").unlink(), _garbage(r(w) / "teacher" / "checkpoint.pt")),
         resume_argv)
    case("resume: a flag that contradicts the run (--T 4)", "resume", None, resume_argv + ["--T", "4"])
    case("resume: an invalid value (--lr nan)", "resume", None, resume_argv + ["--lr", "nan"])
    # report (reads the run files only)
    case("report: summary.json broken", "report", lambda w, fx: _write(r(w) / "summary.json", "{"), ["report", "{run}"])
    case("report: metrics.jsonl broken", "report", lambda w, fx: _write(r(w) / "metrics.jsonl", "{\n"),
         ["report", "{run}"])
    case("report: config.yaml broken", "report", lambda w, fx: _write(r(w) / "config.yaml", "a: [\n"),
         ["report", "{run}"])
    case("report: activity.json broken", "report", lambda w, fx: _write(r(w) / "activity.json", "[{"),
         ["report", "{run}"])
    case("report: summary.json holds a list", "report", lambda w, fx: _write(r(w) / "summary.json", "[]"),
         ["report", "{run}"])
    # --teacher FILE
    train_with = lambda path: ["train", *CHEAP_TRAIN, "--out", "run2", "--teacher", path]  # noqa: E731
    case("--teacher truncated teacher.pt", "teacher-flag", lambda w, fx: _truncate(r(w) / "teacher.pt"),
         train_with("{run}/teacher.pt"))
    case("--teacher a student.pt", "teacher-flag", None, train_with("{run}/student.pt"))
    case("--teacher a YAML file", "teacher-flag", None, train_with("{run}/config.yaml"))
    case("--teacher folder without teacher.pt", "teacher-flag", lambda w, fx: (w / "empty").mkdir(),
         train_with("empty"))
    case("--teacher missing path", "teacher-flag", None, train_with("no-such-teacher.pt"))
    # other commands reading the model
    case("noise: student.pt garbage", "noise", lambda w, fx: _garbage(r(w) / "student.pt"),
         ["noise", "{run}", "--kind", "mismatch", "--levels", "0.1", "--calibrate-epochs", "0", "--quiet"])
    case("export: student.pt truncated", "export", lambda w, fx: _truncate(r(w) / "student.pt"),
         ["export", "{run}", "student.nir"])
    return cases


def _model_format() -> str:
    from spiketandem.runs import MODEL_FORMAT
    return MODEL_FORMAT


# ---- outputs that cannot be written -------------------------------------------------------------

def output_cases() -> list[Case]:
    cases = []

    def case(cid, argv, damage=None, env=None, needs_run=False, real_fs=False):
        cases.append(Case(cid, "outputs", "output", argv=argv, damage=damage, env=env, needs_run=needs_run,
                          real_fs=real_fs))
    case("train --out naming a file", ["train", *CHEAP_TRAIN, "--out", "afile"],
         damage=lambda w, fx: _write(w / "afile", "a user's file\n"))
    case("teacher --out naming a file", ["teacher", *CHEAP, "--out", "afile"],
         damage=lambda w, fx: _write(w / "afile", "a user's file\n"))
    case("train --out under a file", ["train", *CHEAP_TRAIN, "--out", "afile/run"],
         damage=lambda w, fx: _write(w / "afile", "a user's file\n"))
    case("report --out naming a file", ["report", "{run}", "--out", "afile"],
         damage=lambda w, fx: _write(w / "afile", "a user's file\n"), needs_run=True)
    case("noise --out naming a file", ["noise", "{run}", "--kind", "mismatch", "--levels", "0.1",
                                       "--calibrate-epochs", "0", "--out", "afile", "--quiet"],
         damage=lambda w, fx: _write(w / "afile", "a user's file\n"), needs_run=True)
    case("train into a read-only folder", ["train", *CHEAP_TRAIN, "--out", "{locked}/run"], env="readonly")
    case("teacher into a read-only folder", ["teacher", *CHEAP, "--out", "{locked}/run"], env="readonly")
    case("eval of a read-only run", ["eval", "{locked}/run", "--eval-T", "2", "--quiet"], env="readonly",
         needs_run=True)
    case("export into a read-only folder", ["export", "{run}", "{locked}/student.nir", "--allow-subtract-reset"],
         env="readonly", needs_run=True, real_fs=True)
    case("train onto a full disk", ["train", *CHEAP_TRAIN, "--out", "{locked}/run"], env="fulldisk")
    case("train onto a disk that fills up", ["train", *CHEAP_TRAIN, "--out", "{locked}/run"], env="smalldisk")
    case("eval on a full disk", ["eval", "{locked}/run", "--eval-T", "2", "--quiet"], env="fulldisk", needs_run=True)
    case("report onto a full disk", ["report", "{run}", "--out", "{locked}/report"], env="fulldisk", needs_run=True)
    return cases


# ---- running ------------------------------------------------------------------------------------

def snapshot(folder: Path) -> dict:
    """Every file and folder under ``folder``: relative path -> sha256 of the bytes (folders: 'dir')."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_symlink():
            out[rel] = "link:" + os.readlink(path)
        elif path.is_dir():
            out[rel] = "dir"
        elif path.is_file():
            try:
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError as e:
                out[rel] = f"unreadable:{e.errno}"
    return out


def run_cli(argv: list) -> tuple[int, str, str]:
    """``spiketandem argv`` in-process: (exit code, stdout, stderr); an exception that would reach the
    user is printed into stderr as Python prints it."""
    from spiketandem import cli
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main([str(a) for a in argv])
        except SystemExit as e:  # argparse
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except Exception:
            traceback.print_exc()
            rc = 1
    return rc, out.getvalue(), err.getvalue()


def run_api(kwargs: dict, work: Path, fixtures: dict) -> tuple[int, str, str]:
    """``api.train("ltl-offline", digits subset, teacher=..., T=2, epochs=1, out=work/run, **kwargs)`` as a
    CLI-like (rc, stdout, stderr): a SpiketandemError is rc 2 with its message as one error line."""
    from spiketandem import api
    from spiketandem.errors import SpiketandemError
    args = {"teacher": fixtures["teacher_model"], "T": 2, "epochs": 1, "out": str(work / "run"), **kwargs}
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            api.train("ltl-offline", fixtures["data"], **args)
            rc = 0
        except SpiketandemError as e:
            print(f"spiketandem: error: {e}", file=err)
            rc = 2
        except Exception:
            traceback.print_exc(file=err)
            rc = 1
    return rc, "", err.getvalue()


def _error_lines(stderr: str) -> tuple[list[str], list[str]]:
    """(error lines, other lines) of stderr, ignoring argparse's usage block."""
    errors, other, in_usage = [], [], False
    for line in stderr.splitlines():
        if ERROR_LINE.match(line):
            errors.append(line)
            in_usage = False
        elif line.startswith("usage: "):
            in_usage = True
        elif in_usage and line.startswith(" "):
            continue
        elif line.strip():
            other.append(line)
    return errors, other


def _mentions(message: str, word: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(word)}(?![A-Za-z0-9_])", message, re.IGNORECASE) is not None


def classify(case: Case, rc: int, stderr: str, changed: bool) -> tuple[str, str]:
    """(kind, one-line reason) of a finished case."""
    if "Traceback (most recent call last)" in stderr:
        last = [l for l in stderr.strip().splitlines() if l.strip()][-1]
        return "traceback", last[:300]
    if rc == 0:
        return "silent", "exit 0"
    errors, other = _error_lines(stderr)
    if rc != 2 or len(errors) != 1 or other:
        return "traceback", f"exit {rc}, {len(errors)} error line(s), {len(other)} other line(s): " \
                            f"{(errors + other)[:2]}"[:300]
    line = errors[0]
    if changed:
        return "late", line[:300]
    if case.group == "values":
        named = any(_mentions(line, n) for n in _names(case.field)) if case.field else True
        shown = case.value is None or case.value.lower() in line.lower()
        if not (named and shown):
            return "vague", line[:300]
    return "clear", line[:300]


@contextlib.contextmanager
def _working_dir(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _can_mount() -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    with tempfile.TemporaryDirectory() as d:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d], capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", d], capture_output=True)
        return ok


@contextlib.contextmanager
def denied_writes(folder: Path, code: int):
    """Every write under ``folder`` fails with OSError(code) (a read-only folder, EACCES/EROFS, or a full
    disk, ENOSPC), by patching the calls that create files and folders: os.open, os.mkdir,
    builtins.open (write modes)."""
    import builtins
    folder = Path(folder).resolve()
    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

    def inside(p) -> bool:
        try:
            return Path(os.fspath(p)).resolve().is_relative_to(folder)
        except TypeError:
            return False

    def fail(p):
        raise OSError(code, os.strerror(code), os.fspath(p))

    def fake_open(file, mode="r", *a, **k):
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+") and inside(file):
            fail(file)
        return real_open(file, mode, *a, **k)

    def fake_os_open(path, flags, *a, **k):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
            fail(path)
        return real_os_open(path, flags, *a, **k)

    def fake_mkdir(path, *a, **k):
        if inside(path):
            if os.path.isdir(path):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fspath(path))
            fail(path)
        return real_mkdir(path, *a, **k)
    builtins.open, os.open, os.mkdir = fake_open, fake_os_open, fake_mkdir
    try:
        yield
    finally:
        builtins.open, os.open, os.mkdir = real_open, real_os_open, real_mkdir


@contextlib.contextmanager
def locked_folder(work: Path, env: str, fixtures: dict, mount: bool):
    """``work/locked``: read-only or full (a real tmpfs when ``mount``, else patched writes), holding a
    copy of the base run as ``run`` when the case needs one (copied before it is locked)."""
    locked = work / "locked"
    locked.mkdir()
    size = {"fulldisk": "8m", "smalldisk": "1m"}.get(env, "16m")
    if mount:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(locked)], check=True)
    try:
        if fixtures.get("_copy_run_into_locked"):
            shutil.copytree(fixtures["base_run"], locked / "run")
        if mount:
            if env == "readonly":
                subprocess.run(["mount", "-o", "remount,ro", str(locked)], check=True)
            elif env == "fulldisk":
                _fill_disk(locked)
            yield locked
        else:
            code = errno.EACCES if env == "readonly" else errno.ENOSPC
            if env == "readonly" and os.geteuid() != 0:
                locked.chmod(0o555)  # a real read-only folder where the user is not root
            with denied_writes(locked, code):
                yield locked
    finally:
        if mount:
            subprocess.run(["umount", "-l", str(locked)], capture_output=True)
        else:
            locked.chmod(0o755)


def run_case(case: Case, work: Path, fixtures: dict, mount: bool | None = None) -> dict:
    """Run one case in the empty folder ``work``; the result row (``kind`` "skipped" for a case that needs a
    real read-only folder where none can be made: root without mount)."""
    work = Path(work)
    if case.env and case.real_fs and not (mount if mount is not None else _can_mount()) and os.geteuid() == 0:
        return {"id": case.id, "group": case.group, "source": case.source, "kind": "skipped", "rc": None,
                "changed": False, "message": "needs a real read-only folder (mount, or a non-root user)",
                "seconds": 0.0, "env": "patched"}
    if case.needs_run and case.env is None:
        shutil.copytree(fixtures["base_run"], work / "run")
    if case.yaml is not None:
        _write(work / "cfg.yaml", case.yaml)
    if case.damage is not None:
        case.damage(work, fixtures)
    t0 = time.perf_counter()
    with _working_dir(work):
        if case.env:
            if mount is None:
                mount = _can_mount()
            fixtures = {**fixtures, "_copy_run_into_locked": case.needs_run and "{locked}/run" in " ".join(case.argv)}
            if case.needs_run and not fixtures["_copy_run_into_locked"]:
                shutil.copytree(fixtures["base_run"], work / "run")
            with locked_folder(work, case.env, fixtures, mount) as locked:
                argv = [a.replace("{locked}", str(locked)).replace("{run}", "run") for a in case.argv]
                before = snapshot(work)
                rc, out, err = run_cli(argv)
                changed = False  # a full or read-only folder: the point is the one line
        else:
            before = snapshot(work)
            if case.api is not None:
                rc, out, err = run_api(case.api, work, fixtures)
            else:
                rc, out, err = run_cli([a.replace("{run}", "run").replace("{work}", str(work)) for a in case.argv])
            changed = snapshot(work) != before
    kind, reason = classify(case, rc, err, changed)
    return {"id": case.id, "group": case.group, "source": case.source, "kind": kind, "rc": rc, "changed": changed,
            "message": reason, "seconds": round(time.perf_counter() - t0, 2),
            "env": ("tmpfs" if mount else "patched") if case.env else None}


def make_fixtures(root: Path) -> dict:
    """A trained base run (digits, offline LTL, its teacher in run/teacher/), a teacher model and a data
    subset for the API cases."""
    from spiketandem.data import load_dataset
    from spiketandem.teachers import load_teacher
    root = Path(root)
    base = root / "base-run"
    if not (base / "student.pt").is_file():
        with _working_dir(root):
            rc, out, err = run_cli(["train", *CHEAP_TRAIN, "--out", str(base)])
        if rc != 0:
            raise RuntimeError(f"could not train the base run:\n{err}")
    teacher = load_teacher(base / "teacher.pt")[0]
    data = load_dataset("digits").subset(200, 100, seed=0)
    return {"base_run": base, "teacher_model": teacher, "data": data}


def all_cases() -> list[Case]:
    return value_cases() + file_cases() + output_cases()


def table(rows: list[dict]) -> dict:
    out = {}
    for group in ("values", "files", "outputs"):
        sel = [r for r in rows if r["group"] == group]
        out[group] = {"cases": len(sel), **{k: sum(r["kind"] == k for r in sel) for k in KINDS}}
    out["all"] = {"cases": len(rows), **{k: sum(r["kind"] == k for r in rows) for k in KINDS}}
    return out


def markdown(result: dict) -> str:
    lines = ["# Bad-input fuzz (`benchmarks/fuzz_inputs.py`)", "",
             "clear = exit 2, one `spiketandem: error:` line naming the field and value, nothing changed; "
             "vague = one line that names neither; late = the line came after files were written; "
             "traceback = a Python exception (or several lines); silent = exit 0.", ""]
    for label, tab in result["tables"].items():
        lines += [f"## {label}", "", "| group | cases | " + " | ".join(KINDS) + " |",
                  "|---" * (len(KINDS) + 2) + "|"]
        for group, t in tab.items():
            lines.append(f"| {group} | {t['cases']} | " + " | ".join(str(t[k]) for k in KINDS) + " |")
        lines.append("")
    for label, rows in result["rows"].items():
        bad = [r for r in rows if r["kind"] not in ("clear", "skipped")]
        lines += [f"## {label}: cases that are not clear ({len(bad)})", ""]
        lines += [f"- `{r['id']}` ({r['group']}): **{r['kind']}** — {r['message']}" for r in bad] or ["none"]
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--label", default="after", help="name of this table in the results (before, after, ...)")
    p.add_argument("--only", choices=("values", "files", "outputs"))
    p.add_argument("-k", help="only cases whose id contains this")
    p.add_argument("--out", default=str(RESULTS), help="folder for fuzz_inputs.json / .md")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument("-v", action="store_true", help="print each case as it finishes")
    p.add_argument("--no-mount", action="store_true", help="simulate read-only and full folders by patched writes "
                   "even where a tmpfs could be mounted (root)")
    args = p.parse_args(argv)
    cases = [c for c in all_cases() if (not args.only or c.group == args.only) and (not args.k or args.k in c.id)]
    mount = not args.no_mount and _can_mount()
    rows = []
    with tempfile.TemporaryDirectory(prefix="spiketandem-fuzz-") as tmp:
        fixtures = make_fixtures(Path(tmp))
        for i, case in enumerate(cases):
            work = Path(tmp) / f"case-{i:03d}"
            work.mkdir()
            row = run_case(case, work, fixtures, mount)
            rows.append(row)
            if args.v:
                print(f"{row['kind']:9s} {row['seconds']:6.2f}s  {case.id}: {row['message']}", flush=True)
            shutil.rmtree(work, ignore_errors=True)
    tab = table(rows)
    print(json.dumps({args.label: tab}, indent=1))
    if args.no_write or args.k or args.only:
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "fuzz_inputs.json"
    result = json.loads(path.read_text()) if path.is_file() else {}
    result = {"benchmark": "fuzz_inputs", "tables": {**result.get("tables", {}), args.label: tab},
              "rows": {**result.get("rows", {}), args.label: rows},
              "mounted_tmpfs": mount, "python": sys.version.split()[0]}
    path.write_text(json.dumps(result, indent=1) + "\n")
    (out / "fuzz_inputs.md").write_text(markdown(result))
    print(f"wrote {path} and {out / 'fuzz_inputs.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
