"""The one training loop shared by every rule and every caller (CLI, Python API, compare, reproduce,
hardware calibration): optimizer and LR schedule, the rule's lifecycle, progress bar, per-epoch
metrics, atomic checkpoints and resume (with a run folder), and evaluation at several time windows."""
from __future__ import annotations

from dataclasses import dataclass, field
import math
import random
import resource
import sys
import time
import warnings

import numpy as np
import torch
from tqdm import tqdm

from . import distributed
from .choices import LR_SCHEDULES, OPTIMIZERS  # noqa: F401 (declared torch-free for the command line)
from .data.feeding import evaluation_batches, training_batches
from .errors import SpiketandemError
from .kernels import prepare as prepare_kernels
from .precision import prepare_rule
from .rules.base import Rule
from .runs import RunFolder, atomic_save, safe_load

CHECKPOINT_FORMAT = "spiketandem-checkpoint-2"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SpiketandemError(f"device {name!r} requested but CUDA is not available here; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise SpiketandemError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak allocator memory on CUDA; peak resident set size of the process on the CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def make_optimizer(rule: Rule, cfg) -> torch.optim.Optimizer:
    name, lr, wd = rule.optimizer_settings(cfg).values()
    params = rule.optim_parameters()
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd, nesterov=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    return torch.optim.Adam(params, lr=lr, weight_decay=wd)


ONECYCLE_WARMUP = 0.15   # share of the epochs of the one-cycle warm-up
ONECYCLE_START = 1 / 25  # its first epoch's rate, relative to --lr


def onecycle_factor(epoch: int, epochs: int) -> float:
    """The one-cycle schedule's rate in ``epoch`` (0-based) relative to ``--lr`` (Smith & Topin 2019, with a
    cosine descent as in Loshchilov & Hutter 2017): a linear warm-up over the first W = max(1, round(0.15 E))
    epochs from lr/25 to lr, then  0.5 (1 + cos(pi (e - W + 1) / (E - W + 1)))  down towards 0, so that the
    last epoch trains at a small rate.  Stepped once per epoch, like the other schedules."""
    warmup = max(1, round(ONECYCLE_WARMUP * epochs))
    if epoch < warmup:
        return ONECYCLE_START + (1 - ONECYCLE_START) * epoch / max(1, warmup - 1) if warmup > 1 else 1.0
    progress = (epoch - warmup + 1) / (epochs - warmup + 1)
    return 0.5 * (1 + math.cos(math.pi * progress))


def make_scheduler(optimizer, cfg):
    if cfg.lr_schedule == "onecycle":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: onecycle_factor(epoch, max(1, cfg.epochs)))
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, cfg.epochs))
    if cfg.lr_schedule == "step":
        milestones = sorted({max(1, int(round(m * cfg.epochs))) for m in cfg.milestones})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.2)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


def training_context(rule: Rule, cfg, device: torch.device):
    """Apply ``cfg.amp`` / ``cfg.channels_last`` to the rule (see ``precision.py``); returns the factory
    of the context (bf16 autocast or nothing) its training and evaluation steps run in."""
    return prepare_rule(rule, getattr(cfg, "amp", "off"), getattr(cfg, "channels_last", False), device)


@torch.no_grad()
def evaluate(rule: Rule, test, T_list, *, reduce: bool = False, progress: bool = False) -> dict[int, float]:
    """Accuracy (fraction) at each time window in ``T_list`` (one value for non-spiking rules).
    ``reduce``: ``test`` is this rank's shard; correct and total counts are summed over ranks.
    ``progress``: a progress bar over the batches (on a terminal).
    Always in float32, whatever precision trained the rule (``--amp``): the trained network is its float32
    weights, and every door (the loop's test accuracy, the final evaluation, ``eval``, the Python API on a
    reloaded student) computes that one network."""
    rule.train(False)
    correct = {T: 0 for T in T_list}
    total = 0
    bar = tqdm(test, desc=f"evaluating at T = {', '.join(map(str, T_list))}", leave=False,
               disable=not (progress and sys.stderr.isatty() and distributed.is_main()))
    for x, y in bar:
        for T in T_list:
            correct[T] += int((rule.predict(x, T).argmax(1) == y).sum())
        total += y.numel()
    if reduce:
        *counts, total = distributed.sum_across([correct[T] for T in T_list] + [total])
        correct = dict(zip(T_list, counts))
    return {T: correct[T] / max(1, total) for T in T_list}


SHORT_WINDOW = 4       # windows up to this many steps get the low-latency advice
ACCURACY_DROP = 0.10   # a test accuracy this far (a fraction) below the run's best so far is reported


def short_window_advice(rule: Rule, cfg) -> str | None:
    """What to say before a student learns from its teacher at a short window (T <= 4) in a way known to lose
    accuracy there: membranes starting at 0 (a layer needs a whole threshold of input before its first spike,
    so spike counts floor rather than round) or a teacher whose activations are not clipped (thresholds at
    their long tails' percentile, so few spikes in T steps).  None when neither applies."""
    student = getattr(rule, "model", None)
    if not (rule.spiking and rule.needs_teacher and cfg.T <= SHORT_WINDOW and hasattr(student, "membrane_inits")):
        return None
    causes = []
    if not any(student.membrane_inits().values()):
        causes.append("every membrane starts at 0 (--recipe low-latency or --membrane-init 0.5 starts them at "
                      "theta/2, so spike counts round instead of floor)")
    if any(math.isinf(layer.ceiling) for layer in student.layers):
        causes.append("the teacher's activations are not clipped (train it with --act-clip 2: thresholds then "
                      "sit at the clip, not at the percentile of a long tail)")
    if not causes:
        return None
    return (f"spiketandem: a student at T = {cfg.T} loses accuracy when " + "; and ".join(causes)
            + " (docs/ltl_offline.md: short windows)")


def accuracy_drop(rows: list[dict]) -> str | None:
    """What to say when the last epoch's test accuracy fell more than ``ACCURACY_DROP`` below the best epoch
    so far: the run reports the last epoch, not the best one."""
    scored = [(i, r["test_acc"]) for i, r in enumerate(rows) if r.get("test_acc") is not None]
    if len(scored) < 2:
        return None
    best_epoch, best = max(scored[:-1], key=lambda e: e[1])
    last_epoch, last = scored[-1]
    if best - last <= ACCURACY_DROP:
        return None
    return (f"spiketandem: test accuracy fell from {100 * best:.2f} % (epoch {best_epoch + 1}) to {100 * last:.2f} % "
            f"(epoch {last_epoch + 1}); the run reports its last epoch. A lower --lr usually steadies training; "
            "choose it on a validation split (--validation N), never on the test set")


@dataclass
class FitResult:
    """What :func:`fit` returns: the training wall time (including any time before a resume) and the
    metrics rows of every epoch (those before a resume too, when there is a run folder)."""

    seconds: float
    rows: list[dict] = field(default_factory=list)


def _checkpoint(rule: Rule, optimizer, scheduler, epoch: int, elapsed: float, cfg) -> dict:
    return {"format": CHECKPOINT_FORMAT, "rule_name": rule.name, "rule": rule.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "epoch": epoch,
            "epochs": cfg.epochs,
            "train_seconds": elapsed, "rng": torch.get_rng_state()}


def first_nonfinite(rule: Rule) -> str | None:
    """The name of the first parameter or buffer (e.g. BatchNorm statistics) of the rule's modules that
    holds a NaN or an infinity, or None."""
    for module_name, module in rule.modules().items():
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                return f"{module_name}.{name}"
    return None


def diverged(rule: Rule, rows: list[dict], row: dict) -> str | None:
    """Why training has diverged after the epoch of ``row`` (None if it has not): non-finite weights or
    statistics, or a collapse to chance: training accuracy within 1.5x of chance after an earlier epoch at
    3x chance or more, with the loss 10x its best."""
    bad = first_nonfinite(rule)
    if bad is not None:
        return f"{bad} is no longer finite"
    chance = 1.0 / max(1, rule.info.num_classes)
    if rows and 3 * chance < 1 and row["train_acc"] <= 1.5 * chance:
        best_acc, best_loss = max(r["train_acc"] for r in rows), min(r["train_loss"] for r in rows)
        if best_acc >= 3 * chance and row["train_loss"] > 10 * max(best_loss, 1e-12):
            return (f"training accuracy fell to chance ({row['train_acc']:.3f}, chance {chance:.3f}; it was "
                    f"{best_acc:.3f}) and the loss rose to {row['train_loss']:.3g} (best {best_loss:.3g})")
    return None


def _diverged_message(epoch: int, problem: str, lr: float, run) -> str:
    kept = f"; the checkpoint of epoch {epoch} is kept" if epoch > 0 and run is not None else ""
    return f"training diverged in epoch {epoch + 1}: {problem}; lower --lr (now {lr:.3g}) and start again{kept}"


def _resume(checkpoint, rule: Rule, optimizer, cfg, run: RunFolder, device, log, label: str):
    """Restore the rule, optimizer, schedule and RNG of ``checkpoint``; returns (epochs done, seconds,
    their metrics rows, the scheduler).  A larger ``cfg.epochs`` than the run's continues on the schedule
    of the longer run from the current epoch (the learning rate jumps to that schedule's value)."""
    state = safe_load(checkpoint, "checkpoint", map_location=device, expected_format=CHECKPOINT_FORMAT)
    rule.load_state_dict(state["rule"])
    optimizer.load_state_dict(state["optimizer"])
    start, elapsed = state["epoch"], state["train_seconds"]
    if cfg.epochs < start:
        raise SpiketandemError(f"--resume --epochs {cfg.epochs}: the run has already trained {start} epochs; "
                               f"pass --epochs {start} or more")
    if state.get("epochs", cfg.epochs) == cfg.epochs:
        scheduler = make_scheduler(optimizer, cfg)
        scheduler.load_state_dict(state["scheduler"])
    else:
        for group in optimizer.param_groups:  # back to the base rate, then the new schedule's first `start` steps
            group["lr"] = group.get("initial_lr", group["lr"])
        scheduler = make_scheduler(optimizer, cfg)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # stepping the schedule without optimizer steps is the point
            for _ in range(start):
                scheduler.step()
        log(f"extending {label} from {state['epochs']} to {cfg.epochs} epochs: the learning rate follows a "
            f"{cfg.epochs}-epoch {cfg.lr_schedule} schedule from epoch {start + 1} ({optimizer.param_groups[0]['lr']:.3g})")
    torch.set_rng_state(state["rng"])
    if distributed.is_main():
        run.truncate_metrics(start)
    log(f"resuming {label} at epoch {start + 1}/{cfg.epochs}")
    return start, elapsed, [r for r in run.read_metrics() if r.get("epoch", 0) <= start], scheduler


def fit(rule: Rule, cfg, data, device: torch.device, run: RunFolder | None = None, *, resume: bool = False,
        log=print, label: str = "", on_epoch_end=None) -> FitResult:
    """The one training loop: train ``rule`` on ``data`` for ``cfg.epochs`` epochs (0-based), telling it
    its lifecycle (``Rule.setup``, ``on_epoch_start``, ``on_epoch_end``; see ``rules/base.py``).

    ``data``: a built-in dataset (``ArrayDataset``/``EventDataset``) or the user's (``UserData``); see
    ``data/feeding.py``.  With a run folder ``run``: one metrics row and one atomic checkpoint per epoch,
    and ``resume`` continues from its checkpoint; without one, everything stays in memory.  The
    caller's ``on_epoch_end(row)`` is called after each epoch's row; returning True stops training there.
    Under torchrun every rank runs this loop on its shard of each global batch (``distributed.py``:
    gradients averaged before every optimizer step, metrics summed); only rank 0 writes the run folder."""
    main = distributed.is_main()
    if rule.spiking and getattr(cfg, "neuron_backend", "auto") != "reference":
        prepare_kernels(device)  # a one-time kernel build is announced and kept out of the timed epochs
    train_data = rule.setup(data, device)
    step_context = training_context(rule, cfg, device)
    optimizer = make_optimizer(rule, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    checkpoint = run.file("checkpoint.pt") if run is not None else None
    start, elapsed, rows = 0, 0.0, []
    if resume and checkpoint is not None and checkpoint.is_file():
        start, elapsed, rows, scheduler = _resume(checkpoint, rule, optimizer, cfg, run, device, log, label or cfg.rule)
    elif resume and main and run is not None:  # stopped before its first checkpoint: it starts again
        run.truncate_metrics(0)
    train_batches = training_batches(train_data, cfg, device)
    test_batches = evaluation_batches(data, cfg, device, shard=True)
    distributed.attach(rule, optimizer)
    distributed.decorrelate_rng(cfg.seed, start)
    show = cfg.progress and sys.stderr.isatty() and main
    board = None
    if getattr(cfg, "tensorboard", False) and main and run is not None:  # optional dependency, imported when asked
        from .metrics.tensorboard import TensorBoardLogger
        board = TensorBoardLogger(run.file("tensorboard"), next(iter(test_batches or train_batches))[0],
                                  cfg.T if rule.spiking else None, config=cfg)
    advice = short_window_advice(rule, cfg) if main and start < cfg.epochs else None
    if advice is not None:
        warnings.warn(advice, stacklevel=2)
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        rule.on_epoch_start(epoch)
        rule.train(True)
        train_batches.set_epoch(epoch)
        sums, seen = {}, 0
        bar = tqdm(train_batches, desc=f"{label or cfg.rule} {epoch + 1}/{cfg.epochs}", leave=False, disable=not show)
        for step, (x, y) in enumerate(bar):
            with step_context():
                logs = rule.train_step(x, y, optimizer, epoch)
            if board is not None:
                board.log_step(epoch * len(train_batches) + step + 1, logs, samples=y.numel())
            if main and epoch == start and len(train_batches) > 10:  # timed on steps 3-5 (after the warm-up); said if >= 10 s
                if step == 1:
                    warm = time.perf_counter()
                elif step == 4 and (per_batch := (time.perf_counter() - warm) / 3) * len(train_batches) >= 10:
                    log(f"  {label or cfg.rule}: about {per_batch * len(train_batches):.0f} s per epoch "
                        f"({len(train_batches)} batches, {per_batch:.2f} s each, timed on batches 3-5)")
            if not np.isfinite(logs["loss"]):
                raise SpiketandemError(_diverged_message(epoch, f"the loss became {logs['loss']} at step {step + 1}",
                                                         optimizer.param_groups[0]["lr"], run))
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v * (y.numel() if k != "correct" else 1)
            seen += y.numel()
            bar.set_postfix(loss=f"{sums['loss'] / seen:.4f}", acc=f"{sums['correct'] / seen:.3f}")
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        if distributed.active():  # every rank's batches have the same size: the sums are the global ones
            keys = sorted(sums)
            *totals, seen = distributed.sum_across([sums[k] for k in keys] + [seen])
            sums = dict(zip(keys, totals))
        train_time = time.perf_counter() - t0
        elapsed += train_time
        seen = max(1, seen)
        row = {"epoch": epoch + 1, "train_loss": sums.get("loss", 0.0) / seen, "train_acc": sums.get("correct", 0) / seen,
               "lr": lr, "epoch_seconds": train_time}
        row.update({k: v / seen for k, v in sums.items() if k not in ("loss", "correct")})
        problem = diverged(rule, rows, row)  # before the checkpoint: the last good one is never overwritten
        if problem is not None:
            raise SpiketandemError(_diverged_message(epoch, problem, lr, run))
        stop = bool(rule.on_epoch_end(epoch, row))  # the row is global: every rank decides alike
        row["test_acc"] = (evaluate(rule, test_batches, [cfg.T], reduce=distributed.active())[cfg.T]
                           if test_batches is not None else None)
        rows.append(row)
        if main and run is not None:
            run.append_metrics(row)
            if board is not None:
                board.log_epoch(rule, row)
            atomic_save(_checkpoint(rule, optimizer, scheduler, epoch + 1, elapsed, cfg), checkpoint)
        if main:
            held_out = "validation" if getattr(cfg, "validation", None) else "test"  # --validation N
            shown = f"  {held_out} acc {row['test_acc']:.4f}" if row["test_acc"] is not None else ""
            log(f"  {label or cfg.rule} epoch {epoch + 1}/{cfg.epochs}: loss {row['train_loss']:.4f}  "
                f"train acc {row['train_acc']:.4f}{shown}  ({train_time:.1f}s)")
            drop = accuracy_drop(rows)
            if drop is not None:
                warnings.warn(drop, stacklevel=2)
        if stop or (on_epoch_end is not None and on_epoch_end(row)):
            break
    if board is not None:
        board.close()
    return FitResult(elapsed, rows)
