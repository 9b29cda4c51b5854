"""`spiketandem reproduce`: the command line of the experiment runner."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import SpiketandemError
from .experiment import apply_scale, check_requirements, list_experiments, load_experiment, select
from .runner import reproduce, run_configs


def register(p) -> None:
    """The arguments of `spiketandem reproduce` (its parser, made by ``cli.build_parser``)."""
    p.description = ("Run an experiment of the LTL paper from configs/NAME.yaml: teacher, students, evaluation "
                     "(SynOps and accuracy vs T where the experiment asks), further steps, and a report that puts "
                     "the paper's figures next to the measured ones. --scale picks a smaller preset (cpu, digits) "
                     "and the flags below shrink it further. Finished runs in OUT are reused.")
    p.add_argument("name", metavar="NAME", nargs="?", help="experiment name (see --list) or a YAML file")
    p.add_argument("--list", action="store_true", help="list the experiments and their scales")
    p.add_argument("--scale", default="full", help="full (the paper's settings, default) or a scale of the "
                   "experiment (e.g. cpu, digits)")
    p.add_argument("--out", metavar="DIR", help="folder for all runs and the report (default "
                   "runs/reproduce/NAME-SCALE)")
    p.add_argument("--only", nargs="+", metavar="RUN", help="run only these runs of the experiment (and the teacher)")
    p.add_argument("--no-steps", action="store_true", help="skip the further steps (other commands, e.g. noise)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (every run's config) and stop")
    p.add_argument("--resume", action="store_true", help="continue unfinished runs from their checkpoints")
    p.add_argument("--report-only", action="store_true", help="only collect the finished runs in OUT and rewrite "
                   "reproduction.json and the report")
    g = p.add_argument_group("shrink for a small machine (override the scale)")
    g.add_argument("--width", type=float, help="channel width multiplier of every model")
    g.add_argument("--epochs", type=int, help="epochs of every student")
    g.add_argument("--teacher-epochs", type=int, help="epochs of the teacher")
    g.add_argument("--n-train", type=int, help="training images (random subset)")
    g.add_argument("--n-test", type=int, help="test images (random subset)")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--data-dir", help="where the dataset lives")
    g.add_argument("--device", help="auto (default), cpu, cuda")
    p.add_argument("--seeds", type=int, nargs="+", metavar="S",
                   help="train every student once per seed (seed S in OUT/<run>-seed<S>) and report the mean ± "
                        "standard deviation over them (default: each run's own seeds: in the experiment file, else "
                        "its seed)")
    p.add_argument("--json", action="store_true", help="print reproduction.json's content as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_reproduce)


def cmd_reproduce(args) -> None:
    import sys
    if args.list or not args.name:
        experiments = list_experiments()
        if not experiments:
            raise SpiketandemError("no experiment files found (looked in ./configs and the package's configs); "
                                   "reinstall spiketandem, or pass a YAML file: spiketandem reproduce FILE.yaml")
        for name, path in experiments.items():
            exp = load_experiment(str(path))
            print(f"{name:<30} {exp.title}  [scales: full, {', '.join(exp.scales)}]")
        if not args.list:
            print("\ngive an experiment NAME to run it", file=sys.stderr)
        return
    overrides = {k: getattr(args, k) for k in ("width", "epochs", "teacher_epochs", "n_train", "n_test", "batch_size",
                                               "data_dir", "device", "seeds")}
    exp = apply_scale(load_experiment(args.name), args.scale, overrides)
    out = Path(args.out) if args.out else Path("runs") / "reproduce" / f"{exp.name}-{exp.scale}"
    if args.dry_run:
        exp = select(exp, args.only, not args.no_steps)
        check_requirements(exp)
        teacher, students = run_configs(exp, out)
        plan = {"experiment": exp.name, "scale": exp.scale, "out": str(out), "teacher": teacher,
                "runs": {fields["name"]: fields for _, fields in students}, "evaluate": exp.evaluate,
                "commands": exp.commands}
        print(json.dumps(plan, indent=None if args.json else 2, default=str))
        return
    quiet = args.quiet or args.json
    log = (lambda *a, **k: None) if quiet else print
    result = reproduce(exp, out, only=args.only, steps=not args.no_steps, resume=args.resume,
                       report_only=args.report_only, log=log)
    if args.json:
        print(json.dumps(result, default=str))
