"""The one training loop shared by every rule: optimizer and LR schedule, progress bar, per-epoch
metrics, atomic checkpoints and resume, and evaluation at several time windows."""
from __future__ import annotations

import contextlib
import random
import resource
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from . import distributed
from .data import ArrayDataset, DeviceBatches
from .errors import SpiketandemError
from .precision import memory_format, prepare_rule
from .rules.base import Rule
from .runs import RunFolder, atomic_save, safe_load

CHECKPOINT_FORMAT = "spiketandem-checkpoint-1"


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
    name = cfg.optimizer or rule.default_optimizer
    lr = cfg.lr if cfg.lr is not None else rule.default_lr
    wd = cfg.weight_decay if cfg.weight_decay is not None else rule.default_weight_decay
    params = rule.optim_parameters()
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd, nesterov=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    return torch.optim.Adam(params, lr=lr, weight_decay=wd)


def make_scheduler(optimizer, cfg):
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, cfg.epochs))
    if cfg.lr_schedule == "step":
        milestones = sorted({max(1, int(round(m * cfg.epochs))) for m in cfg.milestones})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.2)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


def batches(data: ArrayDataset, split: str, cfg, device, *, train: bool, epoch_seed: int = 0,
            shard: bool = False) -> DeviceBatches:
    """Training batches (under torchrun: this rank's slices of global batches of ``cfg.batch_size``), or
    evaluation batches (with ``shard``: this rank's every ``world_size``-th image, no padding, for
    ``evaluate(..., reduce=True)``)."""
    x, y = (data.train_x, data.train_y) if split == "train" else (data.test_x, data.test_y)
    layout = memory_format(getattr(cfg, "channels_last", False))
    if train:
        return DeviceBatches(x, y, mean=data.mean, std=data.std, shuffle=True, augment=data.augment, device=device,
                             seed=cfg.seed + epoch_seed, memory_format=layout, **distributed.shard_args(cfg.batch_size))
    if shard and distributed.active():
        x, y = x[distributed.rank()::distributed.world_size()], y[distributed.rank()::distributed.world_size()]
    return DeviceBatches(x, y, max(cfg.batch_size, 256), mean=data.mean, std=data.std, shuffle=False, augment=False,
                         device=device, seed=cfg.seed + epoch_seed, memory_format=layout)


def training_context(rule: Rule, cfg, device: torch.device):
    """Apply ``cfg.amp`` / ``cfg.channels_last`` to the rule (see ``precision.py``); returns the factory
    of the context (bf16 autocast or nothing) its training and evaluation steps run in."""
    return prepare_rule(rule, getattr(cfg, "amp", "off"), getattr(cfg, "channels_last", False), device)


@torch.no_grad()
def evaluate(rule: Rule, test: DeviceBatches, T_list, *, reduce: bool = False,
             context=contextlib.nullcontext) -> dict[int, float]:
    """Accuracy (fraction) at each time window in ``T_list`` (one value for non-spiking rules).
    ``reduce``: ``test`` is this rank's shard; correct and total counts are summed over ranks."""
    rule.train(False)
    correct = {T: 0 for T in T_list}
    total = 0
    with context():
        for x, y in test:
            for T in T_list:
                correct[T] += int((rule.predict(x, T).argmax(1) == y).sum())
            total += y.numel()
    if reduce:
        *counts, total = distributed.sum_across([correct[T] for T in T_list] + [total])
        correct = dict(zip(T_list, counts))
    return {T: correct[T] / max(1, total) for T in T_list}


def fit(rule: Rule, cfg, data: ArrayDataset, device: torch.device, run: RunFolder, *, resume: bool = False,
        log=print, label: str = "", on_epoch_end=None) -> float:
    """Train ``rule`` for ``cfg.epochs`` epochs; one metrics row and one checkpoint per epoch.
    ``on_epoch_end(row)`` is called after each epoch's row; returning True stops training there.

    Returns the training wall time in seconds (including any time before a resume).  Under torchrun
    every rank runs this loop on its shard of each global batch (``distributed.py``: gradients averaged
    before every optimizer step, metrics summed); only rank 0 writes the run folder."""
    main = distributed.is_main()
    step_context = training_context(rule, cfg, device)
    optimizer = make_optimizer(rule, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    checkpoint = run.file("checkpoint.pt")
    start, elapsed = 0, 0.0
    if resume and checkpoint.is_file():
        state = safe_load(checkpoint, "checkpoint", map_location=device)
        rule.load_state_dict(state["rule"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, elapsed = state["epoch"], state["train_seconds"]
        torch.set_rng_state(state["rng"])
        if main:
            run.truncate_metrics(start)
        log(f"resuming {label or cfg.rule} at epoch {start + 1}/{cfg.epochs}")
    train_batches = batches(data, "train", cfg, device, train=True)
    test_batches = batches(data, "test", cfg, device, train=False, shard=True)
    distributed.attach(rule, optimizer)
    distributed.decorrelate_rng(cfg.seed, start)
    show = cfg.progress and sys.stderr.isatty() and main
    board = None
    if getattr(cfg, "tensorboard", False) and main:  # optional dependency, imported only when asked for
        from .metrics.tensorboard import TensorBoardLogger
        board = TensorBoardLogger(run.file("tensorboard"), next(iter(test_batches))[0], cfg.T if rule.spiking else None)
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        rule.on_epoch_start(epoch)
        rule.train(True)
        train_batches.set_epoch(epoch)
        sums, seen = {}, 0
        bar = tqdm(train_batches, desc=f"{label or cfg.rule} {epoch + 1}/{cfg.epochs}", leave=False, disable=not show)
        for x, y in bar:
            with step_context():
                logs = rule.train_step(x, y, optimizer, epoch)
            if not np.isfinite(logs["loss"]):
                raise SpiketandemError(f"the loss became {logs['loss']} at epoch {epoch + 1}; lower --lr "
                                       f"(now {optimizer.param_groups[0]['lr']:.3g})")
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
        test_acc = evaluate(rule, test_batches, [cfg.T], reduce=distributed.active(), context=step_context)[cfg.T]
        row = {"epoch": epoch + 1, "train_loss": sums["loss"] / seen, "train_acc": sums["correct"] / seen,
               "test_acc": test_acc, "lr": lr, "epoch_seconds": train_time}
        row.update({k: v / seen for k, v in sums.items() if k not in ("loss", "correct")})
        if main:
            run.append_metrics(row)
            if board is not None:
                board.log_epoch(rule, row)
            atomic_save({"format": CHECKPOINT_FORMAT, "rule": rule.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "train_seconds": elapsed,
                         "rng": torch.get_rng_state()}, checkpoint)
            log(f"  {label or cfg.rule} epoch {epoch + 1}/{cfg.epochs}: loss {row['train_loss']:.4f}  "
                f"train acc {row['train_acc']:.4f}  test acc {test_acc:.4f}  ({train_time:.1f}s)")
        if on_epoch_end is not None and on_epoch_end(row):  # the row is global: every rank decides alike
            break
    if board is not None:
        board.close()
    return elapsed
