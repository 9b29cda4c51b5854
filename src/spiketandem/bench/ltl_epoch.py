"""One epoch of offline LTL against one epoch of teacher training, on the same data and model.

Both epochs use the real rules (``ann`` for the teacher, ``ltl-offline`` for the student of that
teacher), the same ``DeviceBatches`` (random crop + flip on the device) and the training loop's
optimizers.  The time of an epoch is extrapolated from ``--batches`` timed batches:
``epoch_seconds = seconds_per_batch * ceil(n_train / batch_size)``, with ``seconds_per_batch`` the
median over ``--repeats`` rounds of ``--batches`` batches.  The two rules' steps alternate batch by
batch so that a change of the machine's load falls on both; the CPU time of the process is
recorded beside the wall time (``cpu_time_ratio``: less sensitive to other processes on a shared
machine, but it also counts worker threads' spin-waiting).  The load average is recorded.

The dense-compute bound of the ratio LTL / teacher is ``(2T + 1) / 3``: a teacher step costs a
forward, an input gradient and a weight gradient (3 units); an offline-LTL step costs, at each of
the T time steps, a forward and a weight gradient (no input gradient: every layer's input is
detached), i.e. 2T units, plus the teacher's forward for the targets (1 unit).  The first layer,
whose input is the constant analog image, is computed once (``static_input``), which the bound
ignores.  ``ratio_over_bound`` is the measured ratio divided by that bound (the target on a CPU is
<= 1.25).  Inputs are random CIFAR-shaped uint8 images (``--data synthetic``, the default: dense
tensor work does not depend on the values) or real CIFAR-10 (``--data cifar10 --data-dir ...``).
"""
from __future__ import annotations

import copy
import math
import statistics
import time

from ..choices import AMP_MODES
from ..config import FIELD_NAMES, make_config
from ..errors import SpiketandemError

NAME = "ltl-epoch"
HELP = "one epoch of offline LTL vs one epoch of teacher training, against the bound (2T+1)/3"
DESCRIPTION = __doc__
CIFAR_TRAIN_IMAGES = 50_000


def add_arguments(p) -> None:
    p.add_argument("--arch", default="vgg11", help="teacher architecture")
    p.add_argument("--width", type=float, default=0.25, help="channel width multiplier")
    p.add_argument("--T", type=int, default=8, help="time window of the student")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--batches", type=int, default=4, help="distinct timed batches per rule and round")
    p.add_argument("--repeats", type=int, default=3,
                   help="rounds over those batches (the median over all timed batches is kept)")
    p.add_argument("--n-train", type=int, default=CIFAR_TRAIN_IMAGES,
                   help="images in the epoch the time is extrapolated to (CIFAR-10: 50000)")
    p.add_argument("--data", choices=("synthetic", "cifar10"), default="synthetic",
                   help="random CIFAR-shaped images, or real CIFAR-10 (needs --data-dir)")
    p.add_argument("--data-dir", help="CIFAR-10 location for --data cifar10")
    p.add_argument("--amp", choices=AMP_MODES, default="off", help="mixed precision of both rules")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format for both rules")
    p.add_argument("--neuron-backend", default=None,
                   help="neuron implementation of the student, if this build has that option (see `train --help`)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also print the N most expensive operators of one LTL step (torch.profiler)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)


def _images(args, n: int) -> tuple:
    """uint8 images [n, 3, 32, 32], labels, mean and std."""
    import torch
    if args.data == "cifar10":
        from ..data import load_dataset
        data = load_dataset("cifar10", args.data_dir, download=False)
        return data.train_x[:n], data.train_y[:n], data.mean, data.std
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return x, y, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def _config(args, rule: str):
    fields = {"rule": rule, "dataset": "cifar10", "arch": args.arch, "width": args.width, "T": args.T,
              "batch_size": args.batch_size, "progress": False, "seed": args.seed}
    for name, value in (("amp", args.amp), ("channels_last", args.channels_last),
                        ("neuron_backend", args.neuron_backend)):
        if name in FIELD_NAMES and value is not None:
            fields[name] = value
        elif value not in (None, False, "off"):
            raise SpiketandemError(f"--{name.replace('_', '-')} is not supported by this build's config")
    return make_config(fields)


def _timed(step, batch) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one ``step(*batch)``."""
    import torch
    if batch[0].is_cuda:
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    step(*batch)
    if batch[0].is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def run(args, log) -> dict:
    import torch
    from ..data import DeviceBatches
    from ..rules import get_rule
    from ..rules.base import DataInfo
    from ..train import make_optimizer, resolve_device, seed_everything
    from . import environment, load_average
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    seed_everything(args.seed)
    info = DataInfo(10, 3, 32)
    n_images = args.batch_size * (args.batches + 1)
    x, y, mean, std = _images(args, n_images)
    stream = DeviceBatches(x, y, args.batch_size, mean=mean, std=std, shuffle=True, augment=True, device=device,
                           seed=args.seed, drop_last=True)
    data = list(stream)
    warmup, timed = data[0], data[1:]
    from ..train import training_context  # mixed precision and memory format, as `train` applies them

    teacher_cfg, ltl_cfg = _config(args, "ann"), _config(args, "ltl-offline")
    ann = get_rule("ann")(teacher_cfg, info)
    ann.model.to(device)
    ann_opt = make_optimizer(ann, teacher_cfg)
    calibration = torch.cat([b[0] for b in data])[:256]
    teacher = copy.deepcopy(ann.model).eval()  # LTL freezes its teacher; the ANN rule keeps training its own
    ltl = get_rule("ltl-offline")(ltl_cfg, info, teacher, calibration)
    ltl.model.to(device)
    ltl_opt = make_optimizer(ltl, ltl_cfg)
    ann_ctx, ltl_ctx = training_context(ann, teacher_cfg, device), training_context(ltl, ltl_cfg, device)

    def teacher_step(xb, yb):
        with ann_ctx():
            ann.train(True)
            ann.train_step(xb, yb, ann_opt, 0)

    def ltl_step(xb, yb):
        with ltl_ctx():
            ltl.train(True)
            ltl.train_step(xb, yb, ltl_opt, 0)

    for step in (teacher_step, ltl_step):
        step(*warmup)
    steps = {"teacher": teacher_step, "ltl-offline": ltl_step}
    wall = {rule: [] for rule in steps}
    cpu = {rule: [] for rule in steps}
    for r in range(args.repeats):
        for batch in timed:  # batch by batch, alternating: a change of the machine's load hits both rules
            for rule, step in steps.items():
                w, c = _timed(step, batch)
                wall[rule].append(w)
                cpu[rule].append(c)
        log(f"round {r + 1}/{args.repeats}: teacher {statistics.median(wall['teacher']):.3f} s/batch, "
            f"ltl-offline {statistics.median(wall['ltl-offline']):.3f} s/batch (medians so far)")
    profile = _profile(ltl_step, timed[0], args.profile, log) if args.profile else None

    batches_per_epoch = math.ceil(args.n_train / args.batch_size)
    rows = []
    for rule in steps:
        seconds = statistics.median(wall[rule])
        rows.append({"rule": rule, "seconds_per_batch": seconds, "epoch_seconds": seconds * batches_per_epoch,
                     "cpu_seconds_per_batch": statistics.median(cpu[rule]), "wall_samples": wall[rule],
                     "cpu_samples": cpu[rule]})
    ratio = rows[1]["seconds_per_batch"] / rows[0]["seconds_per_batch"]
    cpu_ratio = rows[1]["cpu_seconds_per_batch"] / rows[0]["cpu_seconds_per_batch"]
    bound = (2 * args.T + 1) / 3
    log(f"LTL / teacher epoch time: {ratio:.2f} wall, {cpu_ratio:.2f} CPU time (bound (2T+1)/3 = {bound:.2f}; "
        f"ratio / bound = {ratio / bound:.3f} wall, {cpu_ratio / bound:.3f} CPU)")
    result = {"benchmark": NAME, "arch": args.arch, "width": args.width, "T": args.T, "batch_size": args.batch_size,
              "data": args.data, "timed_batches": args.batches, "repeats": args.repeats, "n_train": args.n_train,
              "batches_per_epoch": batches_per_epoch, "amp": args.amp, "channels_last": args.channels_last,
              "neuron_backend": args.neuron_backend, "rows": rows,
              "ratio": ratio, "bound": bound, "ratio_over_bound": ratio / bound,
              "cpu_time_ratio": cpu_ratio, "cpu_time_ratio_over_bound": cpu_ratio / bound,
              "load_average": load_average(),
              "environment": environment(device)}
    if profile is not None:
        result["profile"] = profile
    return result


def _profile(step, batch, top: int, log) -> list:
    """The ``top`` operators of one LTL step by self CPU time (CUDA time too on a GPU)."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if batch[0].is_cuda else [])
    with profile(activities=activities) as prof:
        step(*batch)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    rows = [{"op": e.key, "calls": e.count, "self_cpu_ms": e.self_cpu_time_total / 1e3,
             "share": e.self_cpu_time_total / max(1, total)} for e in events]
    for r in rows:
        log(f"  {r['op']:<40s} {r['calls']:>6d} calls {r['self_cpu_ms']:9.1f} ms  {100 * r['share']:5.1f}%")
    return rows
