"""The commands `demo`, `teacher`, `train`, `eval` and `check-teacher`: their parsers (``add_*``, named in
``cli.COMMANDS``) and what they do (``cmd_*``): build the run config, hand it to the workflow, print the summary."""
from __future__ import annotations

import argparse
import json
import sys
import time

from .config import CHOICES, SETTINGS, SYNOPS_CONVENTION_HELP
from .run_flags import _add_setting_flag, add_run_flags, config_from_args

# the demo's LTL student starts every membrane at theta/2 (the low-latency recipe's first part): its spike counts
# round instead of floor, so the short windows of its table work too (T = 2: 98.9 % rather than chance); the
# options apply to the demo's own rule, ltl-offline (`demo --rule R` runs R with its own defaults)
DEMO_CONFIG = dict(dataset="digits", arch="digits-cnn", neuron="lif", T=8, eval_T=[2, 4, 8, 16, 32], epochs=5,
                   teacher_epochs=40, batch_size=64, name="demo", options={"membrane_init": 0.5})



def add_demo(p: argparse.ArgumentParser) -> None:
    p.description = "Teacher, offline-LTL student, evaluation at several T, report: on digits."
    add_run_flags(p, rule_flag=True, defaults=DEMO_CONFIG, overwrite=True)
    p.set_defaults(func=cmd_demo)


def add_teacher(p: argparse.ArgumentParser) -> None:
    p.description = ("Train an ANN teacher (SGD + Nesterov momentum, cosine schedule, weight decay, crop+flip where "
                     "it applies).")
    add_run_flags(p, rule_flag=False, overwrite=True, teacher_recipe=True)
    p.set_defaults(func=cmd_teacher)


def add_train(p: argparse.ArgumentParser) -> None:
    p.description = ("Train a spiking student (default rule: offline LTL). On several GPUs: torchrun "
                     "--nproc_per_node=N -m spiketandem train ... (--batch-size is then the global batch; see "
                     "docs/performance.md).")
    add_run_flags(p, rule_flag=True, overwrite=True)
    p.set_defaults(func=cmd_train)


def add_eval(p: argparse.ArgumentParser) -> None:
    p.description = "Re-evaluate RUN_DIR's student at each T (and its teacher); updates summary.json."
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--eval-T", type=int, nargs="+", metavar="N", help="time windows (default: the run's eval_T)")
    p.add_argument("--sweep-T", type=int, nargs="*", metavar="N",
                   help="evaluate at these windows (default 1 2 4 8 16 32 64) and write accuracy and SynOps ratio vs "
                        "T to RUN_DIR/sweep_T.csv and sweep_T.png (the LTL paper's Fig. 2)")
    p.add_argument("--mac-pj", type=float, default=4.6, metavar="PJ",
                   help="energy of one multiply-accumulate in pJ (default: 4.6, 45 nm)")
    p.add_argument("--ac-pj", type=float, default=0.9, metavar="PJ",
                   help="energy of one accumulate in pJ (default: 0.9, 45 nm)")
    p.add_argument("--synops-convention", choices=CHOICES["synops_convention"],
                   help=f"{SYNOPS_CONVENTION_HELP} (default: the run's)")
    p.add_argument("--device", metavar="DEVICE", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_eval)


# the run settings `check-teacher` takes: which teacher, and the data that shape its example input
CHECK_TEACHER_SETTINGS = ("teacher", "teacher_class", "arch", "width", "act_clip", "act_levels", "dataset", "data_dir",
                          "download")
# its own words for the settings that describe a teacher to train elsewhere: (help, default)
CHECK_TEACHER_WORDS = {
    "teacher": ("the teacher to check: teacher.pt, a teacher run folder, pretrained:NAME, or your own state_dict file "
                "with --arch or --teacher-class", "--teacher-class or a zoo --arch with fresh weights"),
    "teacher_class": ("your own teacher module as MODULE:NAME (an nn.Module class, or a function of no arguments "
                      "returning one), imported from the current folder or the installed packages; checked with "
                      "fresh weights, or with --teacher FILE, its state_dict", "a zoo architecture (--arch)"),
    "act_clip": ("the zoo --arch's ReLUs clipped at C, min(max(x, 0), C)", "plain ReLU"),
    "act_levels": ("the zoo --arch's activations quantized to L levels (QCFS)", "full precision"),
}


def add_check_teacher(p: argparse.ArgumentParser) -> None:
    p.description = ("Check a teacher before any training: every operation the student builder refuses, each with its "
                     "fix; what NIR export will refuse; what to expect at short windows. The teacher is --teacher "
                     "(a teacher record: its example input shaped as the record says), your own --teacher-class, or a "
                     "zoo --arch (shaped by --dataset). Exit status 0: the builder accepts it; 1: it refuses it.")
    words = {"kind": "<rule>", "rules": "", "recipe": "the rule's own"}
    for name in CHECK_TEACHER_SETTINGS:
        _add_setting_flag(p, SETTINGS[name], {}, words, [], CHECK_TEACHER_WORDS.get(name))
    p.add_argument("--T", type=int, metavar="N",
                   help="the window the student will run at: windows up to 4 steps get the short-window advice "
                        "(default: 4)")
    p.add_argument("--membrane-init", type=float, default=0.0, metavar="FRACTION",
                   help="the student's starting membrane, as a fraction of the threshold (default: 0; --recipe "
                        "low-latency: 0.5)")
    p.add_argument("--json", action="store_true", help="print the findings as one JSON object")
    p.set_defaults(func=cmd_check_teacher)


def _secondary_rank() -> bool:
    """A torchrun process other than rank 0: it trains but prints nothing (rank 0 reports)."""
    import os
    return int(os.environ.get("RANK", "0")) != 0


def logger_for(args):
    """How a command says what it does: print, on stderr with --json, nothing with --quiet or on a secondary rank."""
    if _secondary_rank():
        return lambda *a, **k: None
    if args.json or args.quiet:
        return lambda *a, **k: print(*a, file=sys.stderr, **k) if not args.quiet else None
    return print


def _print_summary(args, summary: dict, run_dir) -> None:
    from .report import accuracy_table
    from .report.tables import synops_convention
    if _secondary_rank():
        return
    if args.json:
        print(json.dumps({**summary, "run_dir": str(run_dir)}))
        return
    print()
    print(accuracy_table(summary.get("teacher_acc"), summary.get("acc_by_T") or {"-": summary["student_acc"]})
          if summary.get("acc_by_T") else f"accuracy {100 * summary['student_acc']:.2f}%")
    if summary.get("synops_ratio") is not None and summary.get("acc_by_T"):
        print(f"SynOps / teacher MACs at T={summary['T']} ({synops_convention(summary)}): "
              f"{summary['synops_ratio']:.3f}")
    print(f"run folder: {run_dir}")


def cmd_teacher(args):
    from .workflow import default_arch, run_dir_for, train_teacher
    cfg = config_from_args(args)
    if cfg.arch is None:
        cfg = cfg.replace(arch=default_arch(cfg.dataset))
    run = run_dir_for(cfg.replace(rule="ann"), "teacher", resume=args.resume)
    summary = train_teacher(cfg, run, resume=args.resume, overwrite=args.overwrite, log=logger_for(args))
    _print_summary(args, summary, run.path)


def cmd_train(args, base: dict | None = None):
    from .workflow import run_dir_for, train_student
    cfg = config_from_args(args, base)
    run = run_dir_for(cfg, cfg.rule, resume=args.resume)
    summary = train_student(cfg, run, resume=args.resume, overwrite=args.overwrite, log=logger_for(args))
    _print_summary(args, summary, run.path)
    return summary, run


def cmd_demo(args):
    log = logger_for(args)
    log("spiketandem demo: digits (1,797 8x8 images) -> CNN teacher -> offline-LTL LIF student")
    t0 = time.perf_counter()
    ltl = config_from_args(args, DEMO_CONFIG).rule == "ltl-offline"  # --rule or a --config file may choose another
    summary, run = cmd_train(args, DEMO_CONFIG if ltl else {**DEMO_CONFIG, "options": {}})
    from .report import build_report
    markdown, html = build_report([run.path], run.path / "report")
    log(f"demo finished in {time.perf_counter() - t0:.0f}s; report: {markdown} and {html}")


def cmd_eval(args):
    from .workflow import eval_run
    from .metrics import EnergyModel
    from .report import SWEEP_T
    T_list = (args.sweep_T or list(SWEEP_T)) if args.sweep_T is not None else args.eval_T
    summary = eval_run(args.run_dir, T_list, device=args.device or "auto", energy=EnergyModel(args.mac_pj, args.ac_pj),
                       sweep=args.sweep_T is not None, synops_convention=args.synops_convention, log=logger_for(args))
    _print_summary(args, summary, args.run_dir)


def cmd_check_teacher(args) -> int:
    """Print the teacher check; 0 when the builder accepts the teacher, 1 when it refuses it."""
    import dataclasses
    from .config import make_config
    from .teacher_check import check_teacher, teacher_and_example
    cfg = make_config({}, {name: getattr(args, name) for name in CHECK_TEACHER_SETTINGS})
    model, example, name = teacher_and_example(cfg)
    options = {"T": args.T} if args.T is not None else {}
    result = dataclasses.replace(check_teacher(model, example, membrane_init=args.membrane_init, **options),
                                 teacher=name)
    print(json.dumps(result.as_dict()) if args.json else result.render())
    return 0 if result.ok else 1
