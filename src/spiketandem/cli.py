"""The `spiketandem` command."""
from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

from .config import CHOICES, FIELD_NAMES, load_yaml, make_config
from .errors import SpiketandemError
from .rules import RULES, all_options, rules_declaring

DEMO_CONFIG = dict(dataset="digits", arch="digits-cnn", neuron="lif", T=8, eval_T=[2, 4, 8, 16, 32], epochs=5,
                   teacher_epochs=40, batch_size=64, name="demo")


def _add_run_flags(p: argparse.ArgumentParser, rule_flag: bool) -> None:
    """Flags shared by `teacher` and `train`; every one defaults to None so that only given flags
    override the --config file."""
    g = p.add_argument_group("run")
    g.add_argument("--config", metavar="FILE.yaml", help="YAML file of config fields; flags override it")
    g.add_argument("--out", metavar="DIR", help="run folder (default runs/<name>)")
    g.add_argument("--name", help="run name (default <dataset>-<arch>-<rule>)")
    g.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    g.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    g.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    g.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    g.add_argument("--seed", type=int)
    g.add_argument("--tensorboard", action="store_true", default=None,
                   help="log losses, accuracies, per-layer firing rates and local losses to RUN/tensorboard "
                        "(needs: pip install 'spiketandem[tensorboard]')")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", help="digits (default), cifar10, cifar100, tiny-imagenet, fashion-mnist, imagefolder; "
                   "event cameras: nmnist, cifar10-dvs, dvs-gesture (binned into --T frames, docs/events.md)")
    g.add_argument("--data-dir", help="where the dataset lives (see README: Data)")
    g.add_argument("--download", action="store_true", default=None, help="download through torchvision if missing")
    g.add_argument("--n-train", type=int, help="use a random subset of this many training images")
    g.add_argument("--n-test", type=int, help="use a random subset of this many test images")
    g.add_argument("--bins", choices=CHOICES["bins"], help="event datasets: T equal time bins (default) or T bins of "
                   "equal event counts")
    g.add_argument("--event-size", type=int, metavar="S", help="event datasets: pool the sensor to S x S frames "
                   "(e.g. 48 for CIFAR10-DVS; default the full sensor)")
    g = p.add_argument_group("model and optimisation")
    g.add_argument("--arch", help="vgg11, vgg13, vgg16, resnet20, digits-cnn, digits-mlp")
    g.add_argument("--width", type=float, help="channel width multiplier (e.g. 0.25 for a CPU)")
    g.add_argument("--act-clip", type=float, metavar="C", help="teachers trained here use the clipped ReLU "
                   "min(max(x, 0), C) (the LTL authors' teacher: C = 2); helps students at small T (default: plain ReLU)")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int, help="the global batch: under torchrun each of the N processes gets "
                   "batch-size / N of it (must divide evenly)")
    g.add_argument("--lr", type=float)
    g.add_argument("--optimizer", choices=[c for c in CHOICES["optimizer"] if c])
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--lr-schedule", choices=CHOICES["lr_schedule"])
    g.add_argument("--amp", choices=CHOICES["amp"], help="mixed precision: bf16 autocast of the weight layers (GPU; "
                   "allowed but slow on most CPUs); neuron states and losses stay float32 (default off)")
    g.add_argument("--channels-last", action="store_true", default=None,
                   help="NHWC memory format for conv weights and image batches (faster convolutions on GPUs)")
    if not rule_flag:
        return
    g.add_argument("--rule", choices=sorted(r for r in RULES if r != "ann"), help="learning rule (default ltl-offline)")
    g.add_argument("--teacher", metavar="PATH", help="teacher.pt or a teacher run folder; if omitted one is trained")
    g.add_argument("--teacher-epochs", type=int, help="epochs for the teacher trained when --teacher is omitted")
    g = p.add_argument_group("spiking student")
    g.add_argument("--neuron", choices=CHOICES["neuron"], help="if or lif (default lif)")
    g.add_argument("--T", type=int, help="time window for training (default 16)")
    g.add_argument("--eval-T", type=int, nargs="+", help="time windows to evaluate (default 4 8 16 32)")
    g.add_argument("--threshold", type=float, help="firing threshold for randomly initialised students")
    g.add_argument("--tau-m", type=float, help="LIF membrane time constant in steps (leak exp(-dt/tau_m))")
    g.add_argument("--leak", type=float, help="LIF leak factor a directly (overrides --tau-m)")
    g.add_argument("--reset", choices=CHOICES["reset"], help="subtract (paper, default) or zero (authors' code)")
    g.add_argument("--surrogate", choices=CHOICES["surrogate"], help="surrogate gradient (default boxcar, Eq. 8)")
    g.add_argument("--surrogate-param", type=float, help="boxcar/triangle width p or sigmoid/atan slope")
    g.add_argument("--neuron-backend", choices=CHOICES["neuron_backend"], help="auto (default: the fused multi-step "
                   "kernel where it applies), fused (always; an error where it cannot), reference (per-step loop)")
    g.add_argument("--init", choices=CHOICES["init"], help="teacher (BN folded, thresholds balanced) or random")
    g.add_argument("--encoding", choices=CHOICES["encoding"], help="analog constant current (default) or rate spikes")
    g.add_argument("--percentile", type=float, help="percentile for y_norm and threshold balancing (default 99.9)")
    g = p.add_argument_group("rule options (each applies to the rules named)")
    for opt in all_options().values():
        users = ", ".join(rules_declaring(opt.name))
        kwargs = dict(dest=f"option_{opt.name}", help=f"{opt.help} [{users}; default {opt.default}]")
        if opt.type is bool:
            g.add_argument(opt.flag, action=argparse.BooleanOptionalAction, default=None, **kwargs)
        else:
            g.add_argument(opt.flag, type=opt.type, choices=opt.choices, **kwargs)


def config_from_args(args, base: dict | None = None):
    """The run config: ``base`` (e.g. the demo's), then the --config file, then the given flags (every
    flag named after a config field, and every rule option)."""
    fields = dict(base or {})
    if getattr(args, "config", None):
        fields.update(load_yaml(args.config))
    overrides = {k: getattr(args, k) for k in FIELD_NAMES if hasattr(args, k)}
    overrides["options"] = {k[len("option_"):]: v for k, v in vars(args).items() if k.startswith("option_")}
    if args.quiet:
        overrides["progress"] = False
    return make_config(fields, overrides)


def _secondary_rank() -> bool:
    """A torchrun process other than rank 0: it trains but prints nothing (rank 0 reports)."""
    import os
    return int(os.environ.get("RANK", "0")) != 0


def _logger(args):
    if _secondary_rank():
        return lambda *a, **k: None
    if args.json or args.quiet:
        return lambda *a, **k: print(*a, file=sys.stderr, **k) if not args.quiet else None
    return print


def _print_summary(args, summary: dict, run_dir) -> None:
    from .report import accuracy_table
    if _secondary_rank():
        return
    if args.json:
        print(json.dumps({**summary, "run_dir": str(run_dir)}))
        return
    print()
    print(accuracy_table(summary.get("teacher_acc"), summary.get("acc_by_T") or {"-": summary["student_acc"]})
          if summary.get("acc_by_T") else f"accuracy {100 * summary['student_acc']:.2f}%")
    if summary.get("synops_ratio") is not None and summary.get("acc_by_T"):
        print(f"SynOps / teacher MACs at T={summary['T']}: {summary['synops_ratio']:.3f}")
    print(f"run folder: {run_dir}")


def cmd_teacher(args):
    from .pipeline import run_dir_for, train_teacher
    cfg = config_from_args(args)
    from .pipeline import default_arch
    if cfg.arch is None:
        cfg = cfg.replace(arch=default_arch(cfg.dataset))
    run = run_dir_for(cfg.replace(rule="ann"), "teacher", resume=args.resume)
    summary = train_teacher(cfg, run, resume=args.resume, overwrite=getattr(args, "overwrite", False),
                            log=_logger(args))
    _print_summary(args, summary, run.path)


def cmd_train(args, base: dict | None = None):
    from .pipeline import run_dir_for, train_student
    cfg = config_from_args(args, base)
    run = run_dir_for(cfg, cfg.rule, resume=args.resume)
    summary = train_student(cfg, run, resume=args.resume, overwrite=getattr(args, "overwrite", False),
                            log=_logger(args))
    _print_summary(args, summary, run.path)
    return summary, run


def cmd_demo(args):
    log = _logger(args)
    log("spiketandem demo: digits (scikit-learn, 1,797 8x8 images) -> CNN teacher -> offline-LTL LIF student")
    t0 = time.perf_counter()
    summary, run = cmd_train(args, DEMO_CONFIG)
    from .report import build_report
    markdown, html = build_report([run.path], run.path / "report")
    log(f"demo finished in {time.perf_counter() - t0:.0f}s; report: {markdown} and {html}")


def cmd_eval(args):
    from .pipeline import eval_run
    from .metrics import EnergyModel
    from .report import SWEEP_T
    T_list = (args.sweep_T or list(SWEEP_T)) if args.sweep_T is not None else args.eval_T
    summary = eval_run(args.run_dir, T_list, device=args.device or "auto", energy=EnergyModel(args.mac_pj, args.ac_pj),
                       sweep=args.sweep_T is not None)
    _print_summary(args, summary, args.run_dir)


# modules adding subcommands: each defines register(subparsers), which adds its parser and sets func
COMMAND_MODULES: tuple[str, ...] = ("spiketandem.bench", "spiketandem.report.command", "spiketandem.reproduce", "spiketandem.compare",
                                    "spiketandem.export.command", "spiketandem.hardware.command")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spiketandem", description="Train deep spiking neural networks by Local "
                                     "Tandem Learning and the field's other rules.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("demo", help="the whole pipeline on the embedded digits data, in a few minutes on a CPU",
                       description="Teacher, offline-LTL student, evaluation at several T, report: on digits.")
    _add_run_flags(p, rule_flag=True)
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("teacher", help="train an ANN teacher from the zoo", description="Train an ANN teacher "
                       "(SGD + Nesterov momentum, cosine schedule, weight decay, crop+flip where it applies).")
    _add_run_flags(p, rule_flag=False)
    p.set_defaults(func=cmd_teacher)
    p = sub.add_parser("train", help="train a spiking student by a learning rule",
                       description="Train a spiking student (default rule: offline LTL). On several "
                       "GPUs: torchrun --nproc_per_node=N -m spiketandem train ... (--batch-size is then the global "
                       "batch; see docs/performance.md).")
    _add_run_flags(p, rule_flag=True)
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("eval", help="evaluate a trained run folder at several time windows",
                       description="Re-evaluate RUN_DIR's student at each T (and its teacher); updates summary.json.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--eval-T", type=int, nargs="+", help="time windows (default: the run's eval_T)")
    p.add_argument("--sweep-T", type=int, nargs="*", metavar="T",
                   help="evaluate at these windows (default 1 2 4 8 16 32 64) and write accuracy and SynOps ratio vs "
                        "T to RUN_DIR/sweep_T.csv and sweep_T.png (the LTL paper's Fig. 2)")
    p.add_argument("--mac-pj", type=float, default=4.6, help="energy of one multiply-accumulate in pJ (default 4.6, "
                   "45 nm)")
    p.add_argument("--ac-pj", type=float, default=0.9, help="energy of one accumulate in pJ (default 0.9, 45 nm)")
    p.add_argument("--device", help="auto (default), cpu, cuda")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_eval)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except SpiketandemError as e:
        print(f"spiketandem: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spiketandem: interrupted; `--resume` continues from the last checkpoint", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
