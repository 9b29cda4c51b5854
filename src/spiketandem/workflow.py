"""What the commands do: train a teacher, train a student by a rule, evaluate a run folder."""
from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

import torch

from . import distributed, pipelining
from .config import RunConfig
from .data import ArrayDataset, load_dataset
from .data.feeding import calibration_images, evaluation_batches, split_size
from .data.registry import default_arch, is_event_dataset
from .errors import SpiketandemError
from .memory import check_memory
from .metrics import EnergyModel
from .metrics.evaluation import student_metrics
from .model_file import load_weights, read_model, rebuild_rule, save_model, zoo_architecture
from .models import build_model
from .models.quantized import calibrate_clips
from .report import plot_learning_curve, write_T_sweep
from .rules import configure, get_rule
from .rules.base import DataInfo, Rule
from .ownership import check_folder, claim, latest_path, unique_path
from .provenance import provenance
from .teachers import given_teacher_record, load_given_teacher, load_teacher, save_teacher, teacher_file
from .runs import RunFolder
from .train import evaluate, fit, peak_memory_bytes, resolve_device, seed_everything


def run_dir_for(cfg: RunConfig, kind: str, resume: bool = False) -> RunFolder:
    """``--out``, else a unique ``runs/<name>`` (``runs/<dataset>-<arch>-<rule>``, then ``-2``, ``-3``, ...);
    with ``resume`` the newest folder of that series."""
    if cfg.out:
        return RunFolder(cfg.out)
    base = Path("runs") / (cfg.name or f"{cfg.dataset}-{cfg.arch or default_arch(cfg.dataset)}-{kind}")
    return RunFolder(latest_path(base) if resume else unique_path(base))


# config fields a resumed run may change: they do not change what is computed
# (--epochs may grow: the run continues on the longer run's schedule, see train.fit)
RESUMABLE = {"progress", "device", "out", "name", "data_dir", "download", "tensorboard", "neuron_backend", "teacher",
             "eval_T", "epochs", "teacher_epochs", "pipeline_stages"}  # a pipelined run's checkpoint is the whole run's


# fields that only a spiking student uses (an ANN teacher's run ignores them)
SPIKING_FIELDS = {"T", "eval_T", "neuron", "threshold", "tau_m", "dt", "leak", "reset", "surrogate", "surrogate_param",
                  "detach_reset", "init", "encoding", "percentile", "teacher", "teacher_class", "teacher_epochs"}


def check_resume(run: RunFolder, cfg: RunConfig) -> None:
    """A resumed run continues the weights, optimizer and schedule of its checkpoint, so every setting
    must be the one it started with; one message names each flag that contradicts the run."""
    saved = run.read_config()
    ignored = RESUMABLE | (set() if get_rule(cfg.rule).spiking else SPIKING_FIELDS)
    diffs = []
    for name, value in cfg.to_dict().items():
        old = saved.get(name)
        if name in ignored or old is None or value is None:
            continue
        if name == "options":
            old_opts, new_opts = old or {}, value or {}
            for key in sorted(set(old_opts) | set(new_opts)):
                if old_opts.get(key) != new_opts.get(key):
                    diffs.append(f"--{key.replace('_', '-')} {new_opts.get(key)!r} (the run has {old_opts.get(key)!r})")
        elif value != old:
            diffs.append(f"--{name.replace('_', '-')} {value!r} (the run has {old!r})")
    if diffs:
        raise SpiketandemError(f"--resume of {run.path} with settings that contradict the run: {'; '.join(diffs)}. "
                               "A resumed run continues its checkpoint's weights, optimizer and schedule; drop these "
                               "flags, or start a new run (another --out, or --overwrite)")


def record_config(run: RunFolder, cfg: RunConfig, device, resume: bool) -> None:
    """Write config.yaml (rank 0): the resolved values that run and their provenance; on resume, check
    first that nothing contradicts the run, and keep its original record."""
    if not distributed.is_main():
        return
    if resume:
        check_resume(run, cfg)
        if cfg.epochs != run.read_config().get("epochs"):  # a longer run: the record says what runs now
            run.write_config(cfg, {**(run.read_config().get("provenance") or {}), "resumed_with_epochs": cfg.epochs})
        return
    run.write_config(cfg, provenance(cfg, device))


def _mode(resume: bool, overwrite: bool) -> str:
    if resume and overwrite:
        raise SpiketandemError("--resume continues a run and --overwrite starts it again; give one of them")
    return "resume" if resume else "overwrite" if overwrite else "new"


def _event_settings(cfg: RunConfig) -> dict:
    """An event dataset is binned at the student's window (``cfg.T`` bins of kind ``cfg.bins``): spiking rules
    get ``encoding="frames"`` (frame t at step t) and are evaluated at that window only; non-spiking rules
    (the teacher, qat) get the time-integrated frames."""
    if not (is_event_dataset(cfg.dataset) and get_rule(cfg.rule).spiking):
        return {}
    if cfg.encoding == "rate":
        raise SpiketandemError(f"--encoding rate does not apply to {cfg.dataset}: event frames are already spikes "
                               "(drop --encoding; event datasets always use --encoding frames)")
    return {"encoding": "frames", "eval_T": [cfg.T]}


def _teacher_settings(cfg: RunConfig) -> dict:
    """A student of ``--teacher FILE`` is built from that teacher's graph: its architecture, width and
    activation, read from the file (a contradicting flag is one error naming the fix); a state_dict file's
    network is the one ``--arch`` (with ``--width``, ``--act-clip``, ``--act-levels``) or ``--teacher-class``
    names."""
    if cfg.teacher_class:
        _refuse_zoo_flags_with_class(cfg)
    meta = given_teacher_record(cfg)
    if meta["teacher_class"]:
        return {"arch": None, "act_clip": None, "act_levels": None}
    if meta["given"] == "weights":  # the flags describe the network the weights belong to
        return {}
    if cfg.arch is not None and cfg.arch != meta["arch"]:
        raise SpiketandemError(f"--arch {cfg.arch} contradicts the teacher {cfg.teacher}, which is a {meta['arch']}: "
                               "the student is built from the teacher's graph; drop --arch")
    if cfg.act_clip is not None and meta.get("act_clip") != cfg.act_clip:
        raise SpiketandemError(f"--act-clip {cfg.act_clip} asks for a teacher with ReLUs clipped at {cfg.act_clip}, "
                               f"but {cfg.teacher} was trained with act_clip={meta.get('act_clip')}; drop "
                               "--act-clip (the student follows the teacher's own activation) or train a teacher "
                               f"with `spiketandem teacher --act-clip {cfg.act_clip}`")
    if cfg.act_levels is not None and meta.get("act_levels") != cfg.act_levels:
        raise SpiketandemError(f"--act-levels {cfg.act_levels} asks for a teacher quantized to {cfg.act_levels} "
                               f"levels, but {cfg.teacher} has act_levels={meta.get('act_levels')}; quantize it with "
                               f"`spiketandem teacher --teacher {cfg.teacher} --act-levels {cfg.act_levels} "
                               f"--act-clip {meta.get('act_clip') or 2}`")
    return {"arch": meta["arch"], "width": meta["width"], "act_clip": meta.get("act_clip"),
            "act_levels": meta.get("act_levels")}


def _refuse_zoo_flags_with_class(cfg: RunConfig) -> None:
    """--arch, --act-clip and --act-levels describe a zoo network; with --teacher-class they are one error."""
    given = [flag for flag, value in (("--arch", cfg.arch), ("--act-clip", cfg.act_clip),
                                      ("--act-levels", cfg.act_levels)) if value is not None]
    if given:
        raise SpiketandemError(f"{' and '.join(given)} describe a zoo teacher, but --teacher-class "
                               f"{cfg.teacher_class} names your own module, whose layers are used as they are: drop "
                               f"{' and '.join(given)}")


def _architecture_of(cfg: RunConfig) -> dict:
    """The architecture of a run that names no --arch: a given teacher record's (architecture and width; a
    rule that trains from scratch uses no teacher's weights), else the dataset's default."""
    if cfg.teacher:
        meta = given_teacher_record(cfg)
        if meta["given"] == "record" and meta["arch"]:
            return {"arch": meta["arch"], "width": meta["width"]}
    return {"arch": default_arch(cfg.dataset)}


def plan(cfg: RunConfig, *, training: bool = False) -> RunConfig:
    """The configuration a command runs with, settled in one step before any work and before a run folder is
    touched: the rule's options checked (``rules.configure``), the dataset's architecture (or a given teacher
    record's), an event dataset's frames; for a training run also the given teacher's architecture (a student
    of ``--teacher``) and the optimizer, learning rate and weight decay the rule's defaults fill in.  What a
    training run records in config.yaml is exactly this."""
    rule_cls = get_rule(cfg.rule)
    changes = _event_settings(cfg)
    if cfg.teacher_class and not rule_cls.needs_teacher:
        trains = "trains a zoo ANN" if cfg.rule == "ann" else "trains a zoo architecture from scratch"
        raise SpiketandemError(f"--teacher-class names the module of a teacher a student learns from, but rule "
                               f"{cfg.rule} {trains} and learns from no teacher: drop --teacher-class (choose the "
                               "network with --arch)")
    if training and rule_cls.needs_teacher and cfg.teacher:
        changes.update(_teacher_settings(cfg))
    elif cfg.teacher_class and not cfg.teacher:
        raise SpiketandemError(f"--teacher-class {cfg.teacher_class} needs its weights: pass --teacher FILE, the "
                               "module's state_dict saved with torch.save(model.state_dict(), FILE)")
    elif cfg.arch is None and not cfg.teacher_class:
        changes.update(_architecture_of(cfg))
    if training:
        changes.update(rule_cls.optimizer_settings(cfg))
    return configure(cfg, **changes)


def _plan_run(cfg: RunConfig, run: RunFolder, mode: str) -> RunConfig:
    """A training run's settled config (``plan``), after the run folder's own problems (a file, a foreign
    folder, a run already there) are refused; nothing is written yet."""
    if distributed.is_main():
        check_folder(run.path, mode)
    return plan(cfg, training=True)


def load_data(cfg: RunConfig, log=None) -> tuple[ArrayDataset, DataInfo, torch.device]:
    """The data of a planned config (a one-time decode reports its source and progress through ``log``), its
    shape, and the device."""
    if is_event_dataset(cfg.dataset):
        from .data.event_data import load_event_data
        data = load_event_data(cfg.dataset, cfg.data_dir, T=cfg.T, mode=cfg.bins, size=cfg.event_size, log=log)
        data = data if get_rule(cfg.rule).spiking else data.integrated()
    else:
        data = load_dataset(cfg.dataset, cfg.data_dir, download=cfg.download, log=log)
    if cfg.validation:
        data = data.held_out(cfg.validation)
    if cfg.n_train or cfg.n_test:
        data = data.subset(cfg.n_train, cfg.n_test, seed=cfg.seed)
    info = DataInfo(data.num_classes, data.in_channels, data.image_size)
    return data, info, distributed.setup(resolve_device(cfg.device))


def prepare(cfg: RunConfig, log=None) -> tuple[RunConfig, ArrayDataset, DataInfo, torch.device]:
    """``plan`` the config, then load its data: the first step of every command that reads data."""
    cfg = plan(cfg)
    return (cfg, *load_data(cfg, log))


def describe_data(data, validation: int | None = None) -> str:
    """One phrase for the log: which data, how much, where it was read from, and what it is evaluated on."""
    source = getattr(data, "source", "")
    evaluated = "validation samples held out of the training split" if validation else "test samples"
    return (f"{data.name} ({len(data.train_y)} train / {len(data.test_y)} {evaluated}"
            + (f", from {source})" if source else ")"))


def _on_main(run: RunFolder, work) -> dict:
    """``work()`` (which writes the run folder and returns the summary) on rank 0 only; under torchrun
    the other ranks wait at a barrier, then read the summary rank 0 wrote."""
    summary = work() if distributed.is_main() else None
    distributed.barrier()
    return summary if summary is not None else run.read_json("summary.json")


# ---- teachers ---------------------------------------------------------------------------------

def summary_row(cfg: RunConfig, rule: Rule, acc_by_T: dict, teacher_acc, synops_ratio, seconds, device) -> dict:
    final = acc_by_T.get(cfg.T, next(iter(acc_by_T.values()), None))  # None: no test data was given
    return {"rule": cfg.rule, "dataset": cfg.dataset, "arch": cfg.arch,
            "neuron": cfg.neuron if rule.spiking else None, "T": cfg.T if rule.spiking else None,
            "epochs": cfg.epochs, "teacher_acc": teacher_acc, "student_acc": final,
            "acc_by_T": {str(T): a for T, a in acc_by_T.items()} if rule.spiking else {},
            "synops_ratio": synops_ratio, "train_seconds": seconds,
            "peak_memory_bytes": peak_memory_bytes(device), "device": str(device),
            "num_classes": rule.info.num_classes}


def train_teacher(cfg: RunConfig, run: RunFolder, *, resume=False, overwrite=False, log=print) -> dict:
    """`spiketandem teacher`: train the ANN of cfg.arch on cfg.dataset; writes teacher.pt + the run files."""
    cfg = _plan_run(cfg.replace(rule="ann"), run, _mode(resume, overwrite))
    with claim(run.path, _mode(resume, overwrite), main=distributed.is_main()):
        return _train_teacher(cfg, run, resume, log)


def _train_teacher(cfg, run, resume, log) -> dict:
    data, info, device = load_data(cfg, log)
    rule_cls = get_rule("ann")
    record_config(run, cfg, device, resume)
    seed_everything(cfg.seed)
    rule = rule_cls(cfg, info)
    rule.model.to(device)
    if cfg.teacher:
        start_from_teacher(rule.model, cfg, info, calibration_images(data, device), device, log)
    log(f"training teacher {cfg.arch} (width {cfg.width}) on {describe_data(data, cfg.validation)}, {cfg.epochs} "
        f"epochs, device {device}, into {run.path}")
    seconds = fit(rule, cfg, data, device, run, resume=resume, log=log, label="teacher").seconds

    def finish() -> dict:
        acc = evaluate(rule, evaluation_batches(data, cfg, device), [1])[1]
        save_teacher(rule.model, cfg, info, acc, run.file("teacher.pt"))
        rows = run.read_metrics()
        cost = {"act_cost": rows[-1]["act_cost"]} if rows and "act_cost" in rows[-1] else {}  # the last epoch's
        summary = {**summary_row(cfg, rule, {1: acc}, acc, 1.0, seconds, device), "test_samples": len(data.test_y),
                   **cost}
        run.write_json("summary.json", summary)
        plot_learning_curve(rows, run.file("learning_curve.png"), title=f"teacher {cfg.arch} on {cfg.dataset}")
        return summary
    return _on_main(run, finish)


def start_from_teacher(model: torch.nn.Module, cfg: RunConfig, info: DataInfo, images, device, log) -> None:
    """`spiketandem teacher --teacher FILE`: fine-tune from FILE's weights (same architecture and width).
    Quantizing a full-precision teacher (``--act-levels L``): the QCFS clips start where the
    fine-tuning starts from a working network (``calibrate_clips``)."""
    source, meta = load_given_teacher(cfg.replace(act_levels=None), info, device)  # plain weights: full precision
    if (meta["arch"], meta["width"]) != (cfg.arch, cfg.width):
        raise SpiketandemError(f"--teacher {cfg.teacher} is a {meta['arch']} of width {meta['width']}, this teacher a "
                               f"{cfg.arch} of width {cfg.width}: pass --arch {meta['arch']} --width {meta['width']}")
    clips = {k: v for k, v in model.state_dict().items() if k.endswith(".clip") and k not in source.state_dict()}
    load_weights(model, {**clips, **source.state_dict()}, f"teacher {cfg.teacher}")
    if clips:
        calibrate_clips(model, images, cfg.percentile, cfg.act_clip)
    log(f"starting from the weights of {cfg.teacher} ({meta['arch']}, act_clip {meta.get('act_clip')}"
        + (f"; QCFS clips at the p{cfg.percentile} of each layer's activation)" if clips else ")"))


def obtain_teacher(cfg: RunConfig, info: DataInfo, device, run: RunFolder, *, resume: bool, log, data=None) -> tuple:
    """The teacher given by --teacher, or (when none is given) one trained now into RUN/teacher/; RUN/teacher.pt
    is its record (a copy of a given teacher.pt; a given state_dict written as a record, with its test accuracy
    on ``data`` where given)."""
    if cfg.teacher:  # its architecture and activation were checked against the flags when the run was planned
        teacher, meta = load_given_teacher(cfg, info, device)
        if meta["given"] == "weights":
            meta["accuracy"] = teacher_accuracy(teacher, data, cfg, device) if data is not None else None
            if distributed.is_main():
                save_teacher(teacher, cfg, info, meta["accuracy"], run.file("teacher.pt"))
        elif distributed.is_main():
            shutil.copyfile(teacher_file(cfg.teacher), run.file("teacher.pt"))
        return teacher, meta
    sub = RunFolder(run.path / "teacher")
    if resume and sub.file("teacher.pt").is_file():
        teacher, meta = load_teacher(sub.file("teacher.pt"), info, device)
    else:
        log(f"no --teacher given: training the default teacher ({cfg.arch}, width {cfg.width}, {cfg.teacher_epochs} "
            f"epochs) first, into {sub.path}")
        if torch.device(device).type == "cpu" and cfg.arch in ("vgg11", "vgg13", "vgg16", "resnet20") and cfg.width > 0.5:
            log(f"  note: a width-{cfg.width} {cfg.arch} trains for hours on a CPU; --width 0.25 --teacher-epochs 10 "
                "is a CPU-sized setting (docs/ltl_offline.md), or pass a trained --teacher")
        # the teacher recipe (the ANN rule's optimizer defaults), never the student's settings
        teacher_cfg = cfg.replace(rule="ann", epochs=cfg.teacher_epochs, lr=None, optimizer=None, weight_decay=None,
                                  out=str(sub.path), lr_schedule="cosine", options={}, teacher=None,
                                  pipeline_stages=1)  # the teacher trains data-parallel on every rank
        train_teacher(teacher_cfg, sub, resume=resume and sub.exists(), log=log)
        teacher, meta = load_teacher(sub.file("teacher.pt"), info, device)
    if distributed.is_main():
        shutil.copyfile(sub.file("teacher.pt"), run.file("teacher.pt"))
    return teacher, meta


def train_student(cfg: RunConfig, run: RunFolder, *, resume=False, overwrite=False, log=print,
                  on_epoch_end=None) -> dict:
    """`spiketandem train`: a student by cfg.rule, its evaluation at every T, and the run folder."""
    cfg = _plan_run(cfg, run, _mode(resume, overwrite))
    with claim(run.path, _mode(resume, overwrite), main=distributed.is_main()):
        return _train_student(cfg, run, resume, log, on_epoch_end)


def _train_student(cfg, run, resume, log, on_epoch_end) -> dict:
    rule_cls = get_rule(cfg.rule)
    data, info, device = load_data(cfg, log)
    if cfg.pipeline_stages > 1:
        pipelining.check_launch(cfg.pipeline_stages)  # before a teacher is trained or anything written
    probe_teacher = _probe_teacher(cfg, info, rule_cls, device)
    memory = check_memory(cfg, rule_cls, info, data, probe_teacher, device, log, lambda rule, subset, T: (
        evaluate_run_objects(cfg.replace(T=T, eval_T=[T]), rule, probe_teacher, subset, device, None, 0.0)))
    record_config(run, cfg, device, resume)  # on resume: refused here, before anything is trained or written
    teacher, teacher_acc = (None, None)
    if rule_cls.needs_teacher:
        teacher, meta = obtain_teacher(cfg, info, device, run, resume=resume, log=log, data=data)
        teacher_acc = meta["accuracy"]
    elif cfg.teacher:
        log(f"note: rule {cfg.rule} trains {cfg.arch} (width {cfg.width}) from scratch; the weights of --teacher "
            f"{cfg.teacher} are not used (without --arch, it names the architecture)")
    seed_everything(cfg.seed)  # the rule's random draws start here, as in the Python API
    rule = rule_cls(cfg, info, teacher, calibration_images(data, device))
    rule.model.to(device)
    log(f"training {cfg.rule} student ({cfg.neuron.upper()}, T={cfg.T}) of {cfg.teacher_class or cfg.arch} on "
        f"{describe_data(data, cfg.validation)}, {cfg.epochs} epochs, device {device}, into {run.path}")
    trained = pipelining.wrap(rule, cfg)  # --pipeline-stages: the loop drives the stage wrapper
    seconds = fit(trained, cfg, data, device, run, resume=resume, log=log, on_epoch_end=on_epoch_end).seconds
    if trained is not rule:
        log(pipelining.describe(trained.report()))

    def finish() -> dict:  # the final evaluation (every T, SynOps) runs on rank 0 alone
        save_model(rule, run.file("student.pt"), zoo_architecture(cfg))
        summary = evaluate_run_objects(cfg, trained, teacher, data, device, teacher_acc, seconds, run=run, log=log)
        if memory is not None:
            summary["memory_planned_bytes"] = int(memory.peak)
        run.write_json("summary.json", summary)
        plot_learning_curve(run.read_metrics(), run.file("learning_curve.png"), teacher_acc=teacher_acc,
                            title=f"{cfg.rule} student of {cfg.arch} on {cfg.dataset} (T={cfg.T})")
        return summary
    return _on_main(run, finish)


def _probe_teacher(cfg: RunConfig, info: DataInfo, rule_cls, device) -> torch.nn.Module | None:
    """A teacher of the run's network, for planning its memory (``memory.py``): the given teacher (loaded and
    checked against the data), else the architecture a teacher would be trained with, random weights."""
    if not rule_cls.needs_teacher:
        return None
    if cfg.teacher:  # the given teacher itself: its weights and network checked against the data before any work
        return load_given_teacher(cfg, info, device)[0]
    return build_model(cfg.arch, info.num_classes, info.in_channels, info.image_size, cfg.width, cfg.act_clip,
                       cfg.act_levels).to(device).eval()


def evaluate_run_objects(cfg, rule, teacher, data, device, teacher_acc, seconds, T_list=None,
                         run: RunFolder | None = None, energy: EnergyModel | None = None, log=None) -> dict:
    """Accuracy at every T; for spiking rules also SynOps / MACs / energy against the teacher (at every
    T, SynOps in ``cfg.synops_convention``), per-layer firing rates, and (given ``run``) the activity
    record ``activity.json``.  ``log``: where each phase says what it did and how long it took (with a
    progress bar over the test batches on a terminal)."""
    T_list = sorted(set(T_list or cfg.eval_T) | {cfg.T})
    if cfg.encoding == "frames" and rule.spiking and T_list != [cfg.T]:
        raise SpiketandemError(f"this student reads event frames binned into T={cfg.T} steps, so it is evaluated at "
                               f"T={cfg.T} only (asked for {T_list}); train another run with --T N to bin differently")
    test = evaluation_batches(data, cfg, device)
    windows = T_list if rule.spiking else [cfg.T]
    started = time.perf_counter()
    acc_by_T = evaluate(rule, test, windows, progress=log is not None and cfg.progress)
    if log is not None:
        shown = f" at T = {', '.join(map(str, windows))}" if rule.spiking else ""
        samples = "validation samples (--validation)" if cfg.validation else "test samples"
        log(f"final evaluation: accuracy{shown} on {split_size(data):,} {samples} "
            f"({time.perf_counter() - started:.0f} s)")
    ratio, extra = 1.0, {}
    if rule.spiking:  # against the teacher, or (rules without one) the same architecture as an ANN
        started = time.perf_counter()
        reference = teacher if teacher is not None else build_model(cfg.arch, *dataclasses.astuple(rule.info), cfg.width)
        extra, activity = student_metrics(rule, reference.to(device).eval(), test, T_list, cfg.T, energy,
                                          convention=cfg.synops_convention)
        ratio = extra.pop("synops_ratio")
        if log is not None:
            log(f"final evaluation: SynOps at T = {', '.join(map(str, T_list))} and firing records at T = {cfg.T} "
                f"({time.perf_counter() - started:.0f} s)")
        if run is not None and activity is not None:
            run.write_json("activity.json", activity)
    return {**summary_row(cfg, rule, acc_by_T, teacher_acc, ratio, seconds, device), **extra,
            "test_samples": split_size(data), **rule.summary_extras()}


def load_run(path: str | Path, device: str = "auto") -> tuple[RunConfig, Rule, DataInfo, torch.device]:
    """Rebuild a trained run's rule from its model file, with the run's teacher (``teacher.pt``, for
    evaluation against it) where the rule has one."""
    run = RunFolder(path)
    run.read_config()  # a clear error for a folder that is no run
    dev = resolve_device(device)
    obj = read_model(run.file("student.pt"), dev)
    info = DataInfo(**obj["info"])
    teacher = None
    if get_rule(obj["rule"]).needs_teacher and run.file("teacher.pt").is_file():
        teacher = load_teacher(run.file("teacher.pt"), info, dev)[0]
    rule = rebuild_rule(obj, dev, teacher, source=run.file("student.pt"))
    return rule.cfg, rule, info, dev


def eval_run(path: str | Path, T_list=None, device: str = "auto", log=print, energy: EnergyModel | None = None,
             sweep: bool = False, synops_convention: str | None = None) -> dict:
    """`spiketandem eval RUN_DIR`: re-evaluate a trained run at the given windows; updates summary.json
    (and activity.json).  ``sweep`` also writes accuracy and SynOps ratio vs T (sweep_T.csv/.png).
    ``synops_convention`` counts SynOps in that convention (default: the run's own)."""
    from .config import check_windows
    if T_list:  # every window checked, and the summary to update read, before any work or write
        T_list = check_windows("eval windows (--eval-T / --sweep-T)", T_list)
    run = RunFolder(path)
    run.read_config()  # a clear error for a folder that is no run, or whose config.yaml is damaged
    old = run.read_json("summary.json") if run.file("summary.json").exists() else {}
    cfg, rule, info, dev = load_run(path, device)
    if synops_convention is not None:
        cfg = cfg.replace(synops_convention=synops_convention)  # checked before any evaluation or write
    cfg, data, _, _ = prepare(cfg)
    teacher_acc = teacher_accuracy(rule.teacher, data, cfg, dev) if rule.teacher is not None else None
    summary = evaluate_run_objects(cfg, rule, rule.teacher, data, dev, teacher_acc, old.get("train_seconds"), T_list,
                                   run=run, energy=energy, log=log)
    run.write_json("summary.json", {**old, **summary})
    if sweep:
        write_T_sweep(run.path, summary)
    return summary


def teacher_accuracy(teacher: torch.nn.Module, data, cfg: RunConfig, device) -> float:
    """The ANN ``teacher``'s top-1 accuracy on the evaluation split of ``data`` (as a student's is counted)."""
    return evaluate(_AsRule(teacher), evaluation_batches(data, cfg, device), [1])[1]


class _AsRule:
    """Evaluate a plain ANN with the rule-facing evaluate()."""

    spiking = False

    def __init__(self, model):
        self.model = model

    def train(self, mode):
        self.model.train(mode)

    def predict(self, x, T=None):
        return self.model(x.mean(1) if x.dim() == 5 else x)  # event frames: the teacher sees their time average
