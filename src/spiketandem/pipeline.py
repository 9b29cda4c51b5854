"""What the commands do: train a teacher, train a student by a rule, evaluate a run folder."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import torch

from . import distributed
from .config import RunConfig, make_config
from .data import ArrayDataset, DeviceBatches, load_dataset
from .errors import SpiketandemError
from .metrics import EnergyModel
from .metrics.evaluation import student_metrics
from .models import DEFAULT_ARCH, build_model
from .report import plot_learning_curve, write_T_sweep
from .rules import get_rule
from .rules.base import DataInfo, Rule
from .runs import MODEL_FORMAT, TEACHER_FORMAT, RunFolder, atomic_save, safe_load
from .train import evaluate, fit, peak_memory_bytes, resolve_device, seed_everything, batches


def default_arch(dataset: str) -> str:
    return DEFAULT_ARCH.get(dataset, "vgg11")


def run_dir_for(cfg: RunConfig, kind: str) -> RunFolder:
    if cfg.out:
        return RunFolder(cfg.out)
    name = cfg.name or f"{cfg.dataset}-{cfg.arch}-{kind}"
    return RunFolder(Path("runs") / name)


def prepare_events(cfg: RunConfig):
    """An event dataset binned at the student's window (``cfg.T`` bins of kind ``cfg.bins``; cached per
    setting): spiking rules get ``encoding="frames"`` (frame t at step t) and are evaluated at that
    window only; non-spiking rules (the teacher, qat) get the time-integrated frames."""
    from .data.event_data import load_event_data
    spiking = get_rule(cfg.rule).spiking
    if spiking and cfg.encoding == "rate":
        raise SpiketandemError(f"--encoding rate does not apply to {cfg.dataset}: event frames are already spikes "
                               "(drop --encoding; event datasets always use --encoding frames)")
    if spiking:
        cfg = cfg.replace(encoding="frames", eval_T=[cfg.T])
    data = load_event_data(cfg.dataset, cfg.data_dir, T=cfg.T, mode=cfg.bins, size=cfg.event_size)
    return cfg, (data if spiking else data.integrated())


def prepare(cfg: RunConfig) -> tuple[RunConfig, ArrayDataset, DataInfo, torch.device]:
    from .data.event_data import EVENT_DATASETS
    if cfg.arch is None:
        cfg = cfg.replace(arch=default_arch(cfg.dataset))
    if cfg.dataset in EVENT_DATASETS:
        cfg, data = prepare_events(cfg)
    else:
        data = load_dataset(cfg.dataset, cfg.data_dir, download=cfg.download)
    if cfg.n_train or cfg.n_test:
        data = data.subset(cfg.n_train, cfg.n_test, seed=cfg.seed)
    info = DataInfo(data.num_classes, data.in_channels, data.image_size)
    return cfg, data, info, distributed.setup(resolve_device(cfg.device))


def _on_main(run: RunFolder, work) -> dict:
    """``work()`` (which writes the run folder and returns the summary) on rank 0 only; under torchrun
    the other ranks wait at a barrier, then read the summary rank 0 wrote."""
    summary = work() if distributed.is_main() else None
    distributed.barrier()
    return summary if summary is not None else run.read_json("summary.json")


def calibration_images(data: ArrayDataset, device, n: int = 512) -> torch.Tensor:
    """The first n training images, normalised, for threshold balancing."""
    x, _ = next(iter(DeviceBatches(data.train_x[:n], data.train_y[:n], n, mean=data.mean, std=data.std,
                                   shuffle=False, augment=False, device=device)))
    return x


# ---- teachers ---------------------------------------------------------------------------------

def save_teacher(model: torch.nn.Module, cfg: RunConfig, info: DataInfo, accuracy: float, path: Path) -> None:
    atomic_save({"format": TEACHER_FORMAT, "arch": cfg.arch, "width": cfg.width, "act_clip": cfg.act_clip, "dataset": cfg.dataset,
                 "info": dataclasses.asdict(info), "state_dict": model.state_dict(), "accuracy": accuracy}, path)


def load_teacher(path: str | Path, info: DataInfo | None = None, device="cpu") -> tuple[torch.nn.Module, dict]:
    """Load a teacher checkpoint (a teacher.pt file, or a run folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "teacher.pt"
    obj = safe_load(path, "teacher checkpoint", map_location=device)
    if obj["format"] != TEACHER_FORMAT:
        raise SpiketandemError(f"{path} is a {obj['format']} file, not a teacher; pass the teacher.pt a "
                               "`spiketandem teacher` run wrote")
    saved = DataInfo(**obj["info"])
    if info is not None and saved != info:
        raise SpiketandemError(f"teacher {path} was trained for {saved} but this dataset is {info}; train a teacher on "
                               "this dataset (`spiketandem teacher --dataset ...`)")
    model = build_model(obj["arch"], saved.num_classes, saved.in_channels, saved.image_size, obj["width"],
                        obj.get("act_clip"))
    model.load_state_dict(obj["state_dict"])
    return model.to(device).eval(), obj


def summary_row(cfg: RunConfig, rule: Rule, acc_by_T: dict, teacher_acc, synops_ratio, seconds, device) -> dict:
    final = acc_by_T.get(cfg.T, next(iter(acc_by_T.values())))
    return {"rule": cfg.rule, "dataset": cfg.dataset, "arch": cfg.arch,
            "neuron": cfg.neuron if rule.spiking else None, "T": cfg.T if rule.spiking else None,
            "epochs": cfg.epochs, "teacher_acc": teacher_acc, "student_acc": final,
            "acc_by_T": {str(T): a for T, a in acc_by_T.items()} if rule.spiking else {},
            "synops_ratio": synops_ratio, "train_seconds": seconds,
            "peak_memory_bytes": peak_memory_bytes(device), "device": str(device)}


def train_teacher(cfg: RunConfig, run: RunFolder, *, resume=False, log=print) -> dict:
    """`spiketandem teacher`: train the ANN of cfg.arch on cfg.dataset; writes teacher.pt + the run files."""
    cfg, data, info, device = prepare(cfg.replace(rule="ann"))
    seed_everything(cfg.seed)
    if distributed.is_main():
        run.write_config(cfg)
    rule = get_rule("ann")(cfg, info)
    rule.model.to(device)
    log(f"training teacher {cfg.arch} (width {cfg.width}) on {cfg.dataset}: {len(data.train_y)} train / "
        f"{len(data.test_y)} test images, {cfg.epochs} epochs, device {device}")
    seconds = fit(rule, cfg, data, device, run, resume=resume, log=log, label="teacher")

    def finish() -> dict:
        acc = evaluate(rule, batches(data, "test", cfg, device, train=False), [1])[1]
        save_teacher(rule.model, cfg, info, acc, run.file("teacher.pt"))
        summary = summary_row(cfg, rule, {1: acc}, acc, 1.0, seconds, device)
        run.write_json("summary.json", summary)
        plot_learning_curve(run.read_metrics(), run.file("learning_curve.png"),
                            title=f"teacher {cfg.arch} on {cfg.dataset}")
        return summary
    return _on_main(run, finish)


def obtain_teacher(cfg: RunConfig, info: DataInfo, device, run: RunFolder, *, resume: bool, log) -> tuple:
    """The teacher given by --teacher, or (when none is given) one trained now into RUN/teacher/."""
    if cfg.teacher:
        teacher, meta = load_teacher(cfg.teacher, info, device)
        if cfg.act_clip is not None and meta.get("act_clip") != cfg.act_clip:
            raise SpiketandemError(f"--act-clip {cfg.act_clip} asks for a teacher with ReLUs clipped at {cfg.act_clip}, "
                                   f"but {cfg.teacher} was trained with act_clip={meta.get('act_clip')}; drop "
                                   "--act-clip (the student follows the teacher's own activation) or train a teacher "
                                   f"with `spiketandem teacher --act-clip {cfg.act_clip}`")
        if distributed.is_main():
            shutil.copyfile(Path(cfg.teacher) / "teacher.pt" if Path(cfg.teacher).is_dir() else cfg.teacher,
                        run.file("teacher.pt"))
        return teacher, meta["accuracy"]
    sub = RunFolder(run.path / "teacher")
    if resume and sub.file("teacher.pt").is_file():
        teacher, meta = load_teacher(sub.file("teacher.pt"), info, device)
    else:
        log(f"no --teacher given: training the default teacher ({cfg.arch}, {cfg.teacher_epochs} epochs) first, "
            f"into {sub.path}")
        teacher_cfg = cfg.replace(rule="ann", epochs=cfg.teacher_epochs, lr=None, optimizer=None, weight_decay=None,
                                  out=str(sub.path), lr_schedule="cosine")
        train_teacher(teacher_cfg, sub, resume=resume, log=log)
        teacher, meta = load_teacher(sub.file("teacher.pt"), info, device)
    if distributed.is_main():
        shutil.copyfile(sub.file("teacher.pt"), run.file("teacher.pt"))
    return teacher, meta["accuracy"]


def train_student(cfg: RunConfig, run: RunFolder, *, resume=False, log=print, on_epoch_end=None) -> dict:
    """`spiketandem train`: a student by cfg.rule, its evaluation at every T, and the run folder."""
    rule_cls = get_rule(cfg.rule)
    cfg, data, info, device = prepare(cfg)
    if resume and not run.exists():
        raise SpiketandemError(f"--resume: {run.path} holds no run to resume; drop --resume to start one")
    if distributed.is_main():
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_config(cfg)
    seed_everything(cfg.seed)
    teacher, teacher_acc = (None, None)
    if rule_cls.needs_teacher:
        teacher, teacher_acc = obtain_teacher(cfg, info, device, run, resume=resume, log=log)
    seed_everything(cfg.seed)
    rule = rule_cls(cfg, info, teacher, calibration_images(data, device))
    rule.model.to(device)
    log(f"training {cfg.rule} student ({cfg.neuron.upper()}, T={cfg.T}) of {cfg.arch} on {cfg.dataset}, "
        f"{cfg.epochs} epochs, device {device}")
    seconds = fit(rule, cfg, data, device, run, resume=resume, log=log, on_epoch_end=on_epoch_end)

    def finish() -> dict:  # the final evaluation (every T, SynOps) runs on rank 0 alone
        atomic_save({"format": MODEL_FORMAT, "rule": cfg.rule, "info": dataclasses.asdict(info),
                     "state": rule.state_dict()}, run.file("student.pt"))
        summary = evaluate_run_objects(cfg, rule, teacher, data, device, teacher_acc, seconds, run=run)
        run.write_json("summary.json", summary)
        plot_learning_curve(run.read_metrics(), run.file("learning_curve.png"), teacher_acc=teacher_acc,
                            title=f"{cfg.rule} student of {cfg.arch} on {cfg.dataset} (T={cfg.T})")
        return summary
    return _on_main(run, finish)


def evaluate_run_objects(cfg, rule, teacher, data, device, teacher_acc, seconds, T_list=None,
                         run: RunFolder | None = None, energy: EnergyModel | None = None) -> dict:
    """Accuracy at every T; for spiking rules also SynOps / MACs / energy against the teacher (at every
    T), per-layer firing rates, and (given ``run``) the activity record ``activity.json``."""
    T_list = sorted(set(T_list or cfg.eval_T) | {cfg.T})
    if cfg.encoding == "frames" and rule.spiking and T_list != [cfg.T]:
        raise SpiketandemError(f"this student reads event frames binned into T={cfg.T} steps, so it is evaluated at "
                               f"T={cfg.T} only (asked for {T_list}); train another run with --T N to bin differently")
    test = batches(data, "test", cfg, device, train=False)
    acc_by_T = evaluate(rule, test, T_list if rule.spiking else [cfg.T])
    ratio, extra = 1.0, {}
    if rule.spiking:  # against the teacher, or (rules without one) the same architecture as an ANN
        reference = teacher if teacher is not None else build_model(cfg.arch, *dataclasses.astuple(rule.info), cfg.width)
        extra, activity = student_metrics(rule, reference.to(device).eval(), test, T_list, cfg.T, energy)
        ratio = extra.pop("synops_ratio")
        if run is not None and activity is not None:
            run.write_json("activity.json", activity)
    return {**summary_row(cfg, rule, acc_by_T, teacher_acc, ratio, seconds, device), **extra}


def load_run(path: str | Path, device: str = "auto") -> tuple[RunConfig, Rule, DataInfo, torch.device]:
    """Rebuild a trained run's rule (student and teacher) from its folder."""
    run = RunFolder(path)
    cfg = make_config(run.read_config())
    dev = resolve_device(device)
    model = safe_load(run.file("student.pt"), "trained model", map_location=dev)
    info = DataInfo(**model["info"])
    rule_cls = get_rule(model["rule"])
    teacher = load_teacher(run.file("teacher.pt"), info, dev)[0] if rule_cls.needs_teacher else None
    rule = rule_cls(cfg, info, teacher, info.example_input(device=dev))
    rule.model.to(dev)
    rule.load_state_dict(model["state"])
    return cfg, rule, info, dev


def eval_run(path: str | Path, T_list=None, device: str = "auto", log=print, energy: EnergyModel | None = None,
             sweep: bool = False) -> dict:
    """`spiketandem eval RUN_DIR`: re-evaluate a trained run at the given windows; updates summary.json
    (and activity.json).  ``sweep`` also writes accuracy and SynOps ratio vs T (sweep_T.csv/.png)."""
    run = RunFolder(path)
    cfg, rule, info, dev = load_run(path, device)
    cfg, data, _, _ = prepare(cfg)
    teacher_acc = None
    if rule.teacher is not None:
        teacher_acc = evaluate(_AsRule(rule.teacher), batches(data, "test", cfg, dev, train=False), [1])[1]
    old = run.read_json("summary.json") if run.file("summary.json").is_file() else {}
    summary = evaluate_run_objects(cfg, rule, rule.teacher, data, dev, teacher_acc, old.get("train_seconds"), T_list,
                                   run=run, energy=energy)
    run.write_json("summary.json", {**old, **summary})
    if sweep:
        write_T_sweep(run.path, summary)
    return summary


class _AsRule:
    """Evaluate a plain ANN with the rule-facing evaluate()."""

    spiking = False

    def __init__(self, model):
        self.model = model

    def train(self, mode):
        self.model.train(mode)

    def predict(self, x, T=None):
        return self.model(x.mean(1) if x.dim() == 5 else x)  # event frames: the teacher sees their time average
