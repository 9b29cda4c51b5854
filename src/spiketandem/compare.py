"""`spiketandem compare`: several learning rules on one setup, side by side.

Every rule trains on the same dataset, architecture, neuron and time window, and the rules that need a
teacher share one teacher (trained once, into OUT/teacher, unless ``--teacher`` is given).  Each run
is an ordinary run folder (OUT/<rule>; sweep runs OUT/sweep/<rule>-T<T>), so ``eval``, ``report`` and
``noise`` work on them.  Written to OUT:

- ``compare.md`` / ``compare.json``: one row per rule (accuracy, SynOps ratio, time), the sweep, and one
  line per trained run (accuracy, gap to the teacher, SynOps ratio in both conventions, energy ratio,
  epochs, seconds);
- ``fig2a_accuracy_vs_T.png``: accuracy vs time window (the LTL paper's Fig. 2a: offline LTL, STBP and
  the quantized ANN by default), either one training per window (``--sweep train``, the paper's
  protocol) or each main run evaluated at every window (``--sweep eval``, cheaper);
- ``fig3_learning_curves.png``: test accuracy per epoch of the main runs (the paper's Fig. 3);
- ``front_accuracy_vs_synops.png``: the accuracy-vs-operations front, one point per spiking run (every
  rule and window, and offline LTL at each ``--rate-penalties`` value), the teacher as reference.
Rules that only run one way get their fixed settings (``RuleEntry.fixed``: conversion with IF neurons
and no epochs); with ``--quantized-teacher-epochs N`` offline LTL at each window T learns from the
teacher quantized to T levels (``Teachers``).
A finished run folder (one with summary.json) is reused, so an interrupted comparison continues.
Every SynOps ratio of a comparison is counted in its one ``--synops-convention`` (named in the table
headers and on the front's x axis): a reused run counted in another convention is re-evaluated in this
one (`spiketandem eval --synops-convention`), so that one axis never mixes conventions.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from .errors import SpiketandemError
from .report.tables import synops_convention
from .rules import CATALOG, get_rule
from .seeds import check_seeds, mean_std, seed_folder

SWEEP_MODES = ("train", "eval", "none")
DEFAULT_RULES = ("ltl-offline", "ltl-online", "stbp", "tet")
DEFAULT_SWEEP_RULES = ("ltl-offline", "stbp", "qat")
DEFAULT_SWEEP_T = (4, 8, 16, 32)


def registered(names) -> list[str]:
    """The names among ``names`` that are registered rules (optional peers may be absent)."""
    return [n for n in names if n in CATALOG]


def _for_rule(cfg, name: str, teachers: "Teachers | None", options: dict | None = None, rule_lr: dict | None = None,
              **changes):
    """The setup for one rule: its teacher (``teachers.path_for``) only where the rule uses one, of the given
    rule options those the rule declares (plus ``options``), its own learning rate where ``rule_lr`` names
    one (``--rule-lr RULE=LR``, over ``--lr``), and the settings the rule only runs with
    (``RuleEntry.fixed``: conversion takes IF neurons and no epochs)."""
    from .config import make_config
    entry = CATALOG[name]
    own = {k: v for k, v in {**cfg.options, **(options or {})}.items() if entry.option_named(k) is not None}
    lr = {"lr": rule_lr[name]} if rule_lr and name in rule_lr else {}
    fields = {**cfg.to_dict(), **changes, **lr, **dict(entry.fixed), "rule": name, "options": own}
    T = fields.get("T", cfg.T)
    fields["teacher"] = teachers.path_for(name, T) if teachers is not None and get_rule(name).needs_teacher else None
    return make_config(fields)


def _windowed(cfg, name: str, T: int) -> dict:
    """Options of rule ``name`` at window T: its quantization levels follow T (``RuleEntry.levels_option``)
    unless the command line set them."""
    levels = CATALOG[name].levels_option
    return {levels: T} if levels and levels not in cfg.options else {}


def _train(cfg, folder: Path, *, resume: bool, log) -> dict:
    """A run folder's summary: reused when finished, else trained (continued with ``resume``)."""
    from .workflow import train_student
    from .runs import RunFolder
    run = RunFolder(folder)
    if run.file("summary.json").is_file():
        log(f"reusing the finished run {folder}")
        summary = run.read_json("summary.json")
        counted = synops_convention(summary)
        if counted not in (None, cfg.synops_convention):
            from .workflow import eval_run
            log(f"  its SynOps were counted {counted}; re-evaluating them {cfg.synops_convention}")
            summary = eval_run(folder, device=cfg.device, log=log, synops_convention=cfg.synops_convention)
        return summary
    return train_student(cfg.replace(out=str(folder), name=None), run, resume=resume and run.exists(), log=log)


class Teachers:
    """The teachers of a comparison: one full-precision teacher shared by every teacher-based rule (given,
    or trained once into OUT/teacher), and with ``quantize_epochs`` > 0, for offline LTL at each window T a
    copy quantized to T levels (QCFS, ``--act-levels T``) fine-tuned that many epochs from it into
    OUT/teacher-L<T> (`spiketandem teacher --teacher FP --act-levels T`; docs/ltl_offline.md)."""

    QUANTIZED_RULES = ("ltl-offline",)
    QUANTIZE_LR = 0.01  # SGD, a fifth of a teacher's default: it fine-tunes a trained network

    def __init__(self, cfg, out: Path, *, quantize_epochs: int = 0, resume: bool = False, log=print):
        self.cfg, self.out, self.quantize_epochs, self.resume, self.log = cfg, out, quantize_epochs, resume, log
        self.path, self.accuracy = self._full_precision()
        self.quantized: dict[int, dict] = {}  # T -> {"path", "accuracy", "epochs"}

    def _full_precision(self) -> tuple[str, float]:
        """The teacher every rule shares and its test accuracy: a given teacher record as it is; given plain
        weights (``--arch`` or ``--teacher-class``) written as a record into OUT/teacher/, its accuracy measured
        on the test split; else one trained into OUT/teacher/ (reused when there)."""
        from .teachers import given_teacher_record, load_teacher
        from .workflow import obtain_teacher, prepare
        from .runs import RunFolder
        cfg, out = self.cfg, self.out
        if cfg.teacher and given_teacher_record(cfg)["given"] == "record":
            _, meta = load_teacher(cfg.teacher)
            return cfg.teacher, meta["accuracy"]
        path = out / "teacher" / "teacher.pt"
        if path.is_file() and not cfg.teacher:
            return str(path), load_teacher(path)[1]["accuracy"]
        cfg, data, info, device = prepare(cfg)
        run = RunFolder(path.parent) if cfg.teacher else RunFolder(out)
        run.path.mkdir(parents=True, exist_ok=True)
        _, meta = obtain_teacher(cfg, info, device, run, resume=self.resume, log=self.log, data=data)
        return str(path), meta["accuracy"]

    def path_for(self, rule: str, T: int) -> str:
        """The teacher file rule ``rule`` learns from at window T."""
        if self.quantize_epochs <= 0 or rule not in self.QUANTIZED_RULES:
            return self.path
        if T not in self.quantized:
            self.quantized[T] = self._quantize(T)
        return self.quantized[T]["path"]

    def _quantize(self, levels: int) -> dict:
        from .teachers import load_teacher
        from .workflow import train_teacher
        from .runs import RunFolder
        folder = RunFolder(self.out / f"teacher-L{levels}")
        if not folder.file("teacher.pt").is_file():
            _, meta = load_teacher(self.path)
            self.log(f"== teacher quantized to {levels} levels (QCFS), {self.quantize_epochs} epochs from {self.path}")
            cfg = self.cfg.replace(rule="ann", arch=meta["arch"], width=meta["width"],
                                   act_clip=meta.get("act_clip") or 2.0, act_levels=levels, teacher=self.path,
                                   epochs=self.quantize_epochs, lr=self.QUANTIZE_LR, optimizer=None,
                                   weight_decay=None, lr_schedule="cosine", options={}, out=str(folder.path),
                                   name=None, pipeline_stages=1)
            train_teacher(cfg, folder, resume=self.resume and folder.exists(), log=self.log)
        # what that folder's teacher was trained with (a reused one may differ from this call's epochs)
        return {"path": str(folder.file("teacher.pt")), "epochs": folder.read_json("summary.json")["epochs"],
                "accuracy": load_teacher(folder.file("teacher.pt"))[1]["accuracy"]}


def _trained(cfg, folder: Path, seeds: list[int], *, resume: bool, log) -> list[tuple[dict, Path]]:
    """The setup ``cfg`` trained once per seed (each in its ``seeds.seed_folder``): (summary, folder) each."""
    found = []
    for seed in seeds:
        path = seed_folder(folder, seed, seeds)
        if len(seeds) > 1:
            log(f"   seed {seed}")
        found.append((_train(cfg.replace(seed=seed), path, resume=resume, log=log), path))
    return found


def _seed_row(rule: str, summary: dict, run_dir: Path) -> dict:
    """One run of the comparison: its accuracy, operations (in both SynOps conventions), energy and time."""
    from .runs import RunFolder
    run = RunFolder(run_dir)
    rows = run.read_metrics()
    config = run.read_config()
    per_epoch = [r["epoch_seconds"] for r in rows if "epoch_seconds" in r]
    return {"rule": rule, "T": summary.get("T"), "epochs": summary.get("epochs"), "seed": config.get("seed"),
            "student_acc": summary.get("student_acc"), "best_epoch_acc": max((r["test_acc"] for r in rows), default=None),
            "acc_by_T": summary.get("acc_by_T", {}), "synops_ratio": summary.get("synops_ratio"),
            "synops_convention": synops_convention(summary),
            "synops_ratio_by_convention": summary.get("synops_ratio_by_convention") or {},
            "energy_ratio": (summary.get("energy") or {}).get("ratio"),
            "teacher_acc": summary.get("teacher_acc"), "lr": config.get("lr"),
            "train_seconds": summary.get("train_seconds"),
            "seconds_per_epoch": sum(per_epoch) / len(per_epoch) if per_epoch else None,
            "curve": [{"epoch": r["epoch"], "test_acc": r["test_acc"]} for r in rows], "run_dir": str(run_dir)}


def _row(rule: str, trained: list[tuple[dict, Path]]) -> dict:
    """The runs of one setup over its seeds (``_trained``) as one row: every number the mean over the seeds
    (``seeds.mean_std``; times are per run), the accuracies with their standard deviation (``*_std``: None
    for one seed), each seed's accuracy and folder."""
    rows = [_seed_row(rule, summary, folder) for summary, folder in trained]

    def mean(key):
        return mean_std(r[key] for r in rows)[0]
    acc, acc_std = mean_std(r["student_acc"] for r in rows)
    by_T = {T: mean_std(r["acc_by_T"].get(T) for r in rows) for T in rows[0]["acc_by_T"]}
    epochs = max(len(r["curve"]) for r in rows)
    curve = []
    for e in range(epochs):
        m, sd = mean_std(r["curve"][e]["test_acc"] if e < len(r["curve"]) else None for r in rows)
        curve.append({"epoch": e + 1, "test_acc": m, "test_acc_std": sd})
    conventions = {c for r in rows for c in r["synops_ratio_by_convention"]}
    return {**rows[0], "student_acc": acc, "student_acc_std": acc_std, "n_seeds": len(rows),
            "seeds": [r["seed"] for r in rows], "acc_by_seed": {str(r["seed"]): r["student_acc"] for r in rows},
            "best_epoch_acc": mean("best_epoch_acc"), "acc_by_T": {T: m for T, (m, _) in by_T.items()},
            "acc_by_T_std": {T: sd for T, (_, sd) in by_T.items()}, "synops_ratio": mean("synops_ratio"),
            "synops_ratio_by_convention": {c: mean_std(r["synops_ratio_by_convention"].get(c) for r in rows)[0]
                                           for c in sorted(conventions)},
            "energy_ratio": mean("energy_ratio"), "train_seconds": mean("train_seconds"),
            "seconds_per_epoch": mean("seconds_per_epoch"), "curve": curve, "run_dirs": [r["run_dir"] for r in rows]}


def run_compare(cfg, out: str | Path, rules=None, sweep_rules=None, sweep_T=DEFAULT_SWEEP_T, sweep: str = "train",
                resume: bool = False, log=print, penalties=(), quantize_epochs: int = 0,
                rule_lr: dict | None = None, seeds=None) -> dict:
    """Train ``rules`` (and the T sweep) on the setup ``cfg``; write the table and figures into ``out``.
    ``seeds``: every run is trained once per seed (default: ``cfg.seed`` alone) and reported as the mean and
    standard deviation over them (``seeds.py``).
    ``penalties``: also train offline LTL with each ``--rate-penalty`` at each window of the front (the
    sweep's windows, else ``cfg.T``) into OUT/front/, for the accuracy-vs-operations front.
    ``quantize_epochs`` > 0: offline LTL at each window T learns from the teacher quantized to T levels
    (``Teachers``).  ``rule_lr``: rule -> its learning rate (over ``cfg.lr``; rules differ in optimizer and
    default rate, so one ``--lr`` seldom suits them all)."""
    if sweep not in SWEEP_MODES:
        raise SpiketandemError(f"--sweep {sweep!r} is not one of {', '.join(SWEEP_MODES)}")
    rules = list(rules) if rules is not None else registered(DEFAULT_RULES)
    sweep_rules = list(sweep_rules) if sweep_rules else registered(DEFAULT_SWEEP_RULES)
    for name in rules + (sweep_rules if sweep != "none" else []):
        if name == "ann":
            raise SpiketandemError("compare compares student rules; the ANN teacher is trained (or given) for you")
        get_rule(name)  # unknown names fail here, before any training
    if len(set(rules)) != len(rules):
        raise SpiketandemError(f"--rules names a rule twice: {' '.join(rules)}")
    if not rules and sweep == "none":
        raise SpiketandemError("nothing to compare: --rules names no rule and --sweep is none")
    if sweep != "none" and (not sweep_T or any(T <= 0 for T in sweep_T)):
        raise SpiketandemError(f"--sweep-T needs positive time windows, got {sweep_T}")
    if quantize_epochs < 0:
        raise SpiketandemError(f"--quantized-teacher-epochs must be >= 0, got {quantize_epochs}")
    rule_lr = dict(rule_lr or {})
    seeds = check_seeds(seeds if seeds is not None else [cfg.seed])
    compared = set(rules) | (set(sweep_rules) if sweep != "none" else set()) | ({"ltl-offline"} if penalties else set())
    for name, lr in rule_lr.items():
        if name not in compared:
            raise SpiketandemError(f"--rule-lr names {name!r}, which this comparison does not train (it trains "
                                   f"{' '.join(sorted(compared))}); name one of those")
        if not lr > 0:
            raise SpiketandemError(f"--rule-lr {name}={lr:g}: a learning rate must be > 0")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    teachers = None
    if any(get_rule(r).needs_teacher for r in rules + (sweep_rules if sweep != "none" else [])):
        teachers = Teachers(cfg, out, quantize_epochs=quantize_epochs, resume=resume, log=log)

    def setup_for(name: str, options: dict | None = None, **changes):
        return _for_rule(cfg, name, teachers, options, rule_lr, **changes)

    def train(name: str, run_cfg, folder: Path) -> dict:
        return _row(name, _trained(run_cfg, folder, seeds, resume=resume, log=log))
    runs = {}
    for name in rules:
        run_cfg = setup_for(name, _windowed(cfg, name, cfg.T))
        log(f"== {name}")
        runs[name] = train(name, run_cfg, out / name)
    sweep_acc, sweep_std, sweep_ratio, sweep_rows = _sweep(cfg, out, sweep, sweep_rules, list(sweep_T), setup_for,
                                                           train, runs, log)
    front_T = list(sweep_T) if sweep != "none" else [cfg.T]
    penalty_runs = _penalty_runs(out, penalties, front_T, setup_for, train, log)
    teacher_acc = teachers.accuracy if teachers else None
    result = {"setup": {k: getattr(cfg, k) for k in ("dataset", "arch", "width", "n_train", "n_test", "neuron", "T",
                                                      "epochs", "batch_size", "lr", "synops_convention")},
              "seeds": seeds,
              "rule_lr": rule_lr,
              "teacher": teachers.path if teachers else None, "teacher_acc": teacher_acc,
              "quantized_teachers": {str(T): q for T, q in sorted(teachers.quantized.items())} if teachers else {},
              "runs": runs,
              "sweep": {"mode": sweep, "T": list(sweep_T) if sweep != "none" else [], "accuracy": sweep_acc,
                        "accuracy_std": sweep_std, "synops_ratio": sweep_ratio},
              "front": _front(runs, sweep_acc, sweep_std, sweep_ratio, penalty_runs),
              "table": _table(runs, sweep_rows, penalty_runs, teacher_acc),
              "wall_seconds": time.perf_counter() - t0}
    from .report.comparison import write_comparison  # matplotlib: imported when a comparison is written
    result["files"] = write_comparison(result, out)
    return result


def _sweep(cfg, out: Path, mode: str, rules: list, Ts: list, setup_for, train, runs: dict, log):
    """Accuracy (its standard deviation over the seeds, and the SynOps ratio) vs T per rule: one run per T
    (``train``) or the main runs evaluated at every T (``eval``; non-spiking rules such as qat, whose levels are
    T, are trained per T anyway); ``setup_for(rule, options, **changes)`` is each run's config, ``train(rule,
    config, folder)`` its row over the seeds (``_row``).
    Also returns, for ``train``, every sweep run's row: rule -> {T: row}."""
    acc, std, ratio, rows = {}, {}, {}, {}
    if mode == "none":
        return acc, std, ratio, rows
    from .workflow import eval_run
    for name in rules:
        rule_cls = get_rule(name)
        acc[name], std[name], ratio[name], rows[name] = {}, {}, {}, {}
        if mode == "eval" and rule_cls.spiking:
            main = runs[name] if name in runs else train(name, setup_for(name, _windowed(cfg, name, cfg.T)), out / name)
            log(f"== {name}: evaluating at T = {' '.join(map(str, Ts))}")
            summaries = [eval_run(folder, Ts, device=cfg.device, log=log, synops_convention=cfg.synops_convention)
                         for folder in main["run_dirs"]]
            for T in map(str, Ts):
                acc[name][T], std[name][T] = mean_std(s["acc_by_T"][T] for s in summaries)
                if all(T in (s.get("synops_ratio_by_T") or {}) for s in summaries):
                    ratio[name][T] = mean_std(s["synops_ratio_by_T"][T] for s in summaries)[0]
            continue
        for T in Ts:
            if T == cfg.T and name in runs:  # the main run already trained this rule at this window
                row = runs[name]
            else:
                log(f"== {name}, T = {T}")
                folder = out / "sweep" / f"{name}-T{T}"
                row = train(name, setup_for(name, _windowed(cfg, name, T), T=T, eval_T=[T]), folder)
            rows[name][T] = row
            acc[name][str(T)], std[name][str(T)] = row["student_acc"], row["student_acc_std"]
            if rule_cls.spiking:
                ratio[name][str(T)] = row["synops_ratio"]
    return acc, std, ratio, rows


def _penalty_runs(out: Path, penalties, Ts: list, setup_for, train, log) -> list[dict]:
    """Offline LTL at every window and firing-rate penalty (energy-aware LTL), one run each (``setup_for``,
    ``train``: as in ``_sweep``)."""
    found = []
    for T in Ts if penalties else []:
        for penalty in penalties:
            log(f"== ltl-offline, T = {T}, rate penalty {penalty:g}")
            run_cfg = setup_for("ltl-offline", {"rate_penalty": float(penalty)}, T=T, eval_T=[T])
            row = train("ltl-offline", run_cfg, out / "front" / f"ltl-offline-T{T}-p{penalty:g}")
            found.append({"method": "ltl-offline + rate penalty", "T": T, "penalty": float(penalty),
                          "acc": row["student_acc"], "acc_std": row["student_acc_std"],
                          "synops_ratio": row["synops_ratio"],
                          "label": f"T={T}, p={penalty:g}", "row": row})
    return found


def _front(runs: dict, sweep_acc: dict, sweep_std: dict, sweep_ratio: dict, penalty_runs: list[dict]) -> list[dict]:
    """Every spiking setup as one point (method, T, accuracy and its standard deviation over the seeds, SynOps
    ratio) of the accuracy-vs-operations front."""
    points, seen = [], set()
    for name, values in sweep_acc.items():
        for T, acc in values.items():
            ratio = sweep_ratio.get(name, {}).get(T)
            if ratio is not None:
                points.append({"method": name, "T": int(T), "acc": acc, "acc_std": sweep_std[name].get(T),
                               "synops_ratio": ratio, "label": f"T={T}"})
                seen.add((name, int(T)))
    for name, r in runs.items():
        if r["synops_ratio"] is not None and r["T"] is not None and (name, r["T"]) not in seen:
            points.append({"method": name, "T": r["T"], "acc": r["student_acc"], "acc_std": r["student_acc_std"],
                           "synops_ratio": r["synops_ratio"], "label": f"T={r['T']}"})
    return points + [{k: v for k, v in p.items() if k != "row"} for p in penalty_runs]


def _table(runs: dict, sweep_rows: dict, penalty_runs: list[dict], teacher_acc: float | None) -> list[dict]:
    """One line per trained run (main runs, the sweep, the rate penalties), each once: method, T, accuracy,
    its gap to the full-precision teacher in points (means over the seeds; ``acc_std``: the accuracy's and the
    gap's standard deviation), the SynOps ratio in both conventions, the energy ratio, training epochs and
    seconds (per run)."""
    lines, seen = [], set()
    found = [(r["rule"], r) for rows in sweep_rows.values() for r in rows.values()]
    found += [(name, r) for name, r in runs.items()]
    found += [(f"ltl-offline, rate penalty {p['penalty']:g}", p["row"]) for p in penalty_runs]
    for method, r in found:
        if r["run_dir"] in seen:
            continue
        seen.add(r["run_dir"])
        acc = r["student_acc"]
        lines.append({"method": method, "T": r["T"], "acc": acc, "acc_std": r["student_acc_std"],
                      "seeds": r["seeds"],
                      "gap": None if acc is None or teacher_acc is None else 100 * (teacher_acc - acc),
                      "synops_exact": r["synops_ratio_by_convention"].get("exact"),
                      "synops_standard": r["synops_ratio_by_convention"].get("standard"),
                      "energy_ratio": r["energy_ratio"], "epochs": r["epochs"], "lr": r.get("lr"),
                      "train_seconds": r["train_seconds"], "teacher_acc": r["teacher_acc"], "run_dir": r["run_dir"]})
    return lines


# ---- command line ---------------------------------------------------------------------------------

def _rule_lr(text: str) -> tuple[str, float]:
    """``RULE=LR`` of ``--rule-lr``."""
    import argparse
    name, sep, value = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not RULE=LR (e.g. ltl-offline=3e-4)") from None


def register(p) -> None:
    """The arguments of `spiketandem compare` (its parser, made by ``cli.build_parser``)."""
    from .run_flags import add_run_flags
    p.description = ("Train several rules on one dataset/architecture/teacher and compare them: OUT/compare.md and "
                     ".json, the LTL paper's Fig. 2a (accuracy vs T) and Fig. 3 (learning curves). Every run is a "
                     "normal run folder under OUT; finished ones are reused. Run flags and rule options apply to "
                     "every rule (each rule reads only its own options).")
    add_run_flags(p, rule_flag=True)
    g = p.add_argument_group("comparison")
    g.add_argument("--rules", nargs="+", metavar="RULE",
                   help=f"rules to train at --T (default: {' '.join(DEFAULT_RULES)}, those registered)")
    g.add_argument("--sweep", choices=SWEEP_MODES, default="train",
                   help="accuracy vs T: train one run per T (default, the paper's protocol), evaluate the main runs at "
                        "every T (eval), or skip (none)")
    g.add_argument("--sweep-rules", nargs="+", metavar="RULE",
                   help=f"rules in the T sweep (default: {' '.join(DEFAULT_SWEEP_RULES)}, those registered)")
    g.add_argument("--sweep-T", type=int, nargs="+", default=list(DEFAULT_SWEEP_T), metavar="T",
                   help="time windows of the sweep (default 4 8 16 32)")
    g.add_argument("--rate-penalties", type=float, nargs="+", default=(), metavar="P",
                   help="also train offline LTL with each --rate-penalty P at each sweep window: more points of the "
                        "accuracy-vs-SynOps front (front_accuracy_vs_synops.png)")
    g.add_argument("--rule-lr", nargs="+", default=(), metavar="RULE=LR", type=_rule_lr,
                   help="a learning rate for one rule, over --lr (e.g. ltl-offline=3e-4 stbp=1e-3): rules differ in "
                        "optimizer and default rate")
    g.add_argument("--seeds", type=int, nargs="+", metavar="S",
                   help="train every run once per seed and report the mean ± standard deviation over them (seed S "
                        "in <run>-seed<S>; default: --seed alone, in <run>)")
    g.add_argument("--quantized-teacher-epochs", type=int, default=0, metavar="N",
                   help="offline LTL at each window T learns from the teacher quantized to T levels (QCFS, "
                        "--act-levels T), fine-tuned N epochs from the full-precision teacher into OUT/teacher-L<T>; "
                        "the table's gaps stay to the full-precision teacher (default 0: off)")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args) -> None:
    from .commands import logger_for
    from .run_flags import config_from_args
    from .workflow import default_arch
    if args.rule:
        raise SpiketandemError("compare trains several rules: name them with --rules, not --rule")
    if args.seeds is not None and args.seed is not None:
        raise SpiketandemError("pass --seed (one run per setup) or --seeds (one run per seed), not both")
    cfg = config_from_args(args)
    if cfg.arch is None:
        cfg = cfg.replace(arch=default_arch(cfg.dataset))
    out = Path(cfg.out or Path("runs") / f"compare-{cfg.dataset}-{cfg.arch}")
    if any(p < 0 for p in args.rate_penalties):
        raise SpiketandemError(f"--rate-penalties must be >= 0, got {args.rate_penalties}")
    result = run_compare(cfg, out, args.rules, args.sweep_rules, args.sweep_T, args.sweep, resume=args.resume,
                         log=logger_for(args), penalties=args.rate_penalties,
                         quantize_epochs=args.quantized_teacher_epochs, rule_lr=dict(args.rule_lr), seeds=args.seeds)
    if args.json:
        print(json.dumps({**result, "out": str(out)}))
        return
    print()
    from .report.comparison import comparison_markdown
    print(comparison_markdown(result))
    print(f"comparison folder: {out}")
