"""Wall time to a target test accuracy: an ANN teacher, then its offline-LTL student (GPU).

The default is the issue's setting: full-width VGG-11 on CIFAR-10, the teacher trained for
``--teacher-epochs`` epochs, then an offline-LTL LIF student at T = 16 trained epoch by epoch until
its test accuracy (at T) reaches ``--target`` (0.92) or ``--epochs`` run out.  Both phases go
through the same pipeline as ``spiketandem teacher`` / ``spiketandem train`` (data held on the GPU
as uint8 and augmented there, bf16 autocast, channels_last), so the time includes everything a user
waits for: data set-up, training, the per-epoch test evaluation, checkpoints.  The clock starts
before the teacher's data is loaded and stops at the end of the student epoch whose evaluation first
reaches the target (``seconds_to_target``; the student's final report after that is not counted).

It needs a CUDA GPU: on a CPU the full setting would take days, so it refuses unless
``--allow-cpu`` is given, which runs a tiny smoke configuration instead (digits, a small CNN, a few
epochs, target 0.5) -- that checks the machinery, its time means nothing.  The CIFAR-10 archive is
given by ``--data-dir`` (see README: Data).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..config import make_config
from ..errors import SpiketandemError
from ..choices import AMP_MODES
from ..runs import RunFolder

NAME = "time-to-accuracy"
HELP = "wall time of teacher + offline-LTL student until the student reaches a target accuracy (GPU)"
DESCRIPTION = __doc__
TARGET_SECONDS = 600  # the target on one H100: teacher + student in under 10 minutes

GPU_SETTING = dict(dataset="cifar10", arch="vgg11", width=1.0, T=16, teacher_epochs=40, epochs=10, batch_size=128,
                   teacher_batch_size=256, target=0.92)
SMOKE_SETTING = dict(dataset="digits", arch="digits-cnn", width=1.0, T=4, teacher_epochs=3, epochs=2, batch_size=64,
                     teacher_batch_size=64, target=0.5)


def add_arguments(p) -> None:
    unset = dict(default=argparse.SUPPRESS)  # unset = the setting's value (shown in the help text)
    g, c = GPU_SETTING, SMOKE_SETTING
    p.add_argument("--data-dir", help="where CIFAR-10 lives (e.g. the cifar10 tar.gz)", **unset)
    p.add_argument("--dataset", help=f"GPU: {g['dataset']}; smoke: {c['dataset']}", **unset)
    p.add_argument("--arch", help=f"GPU: {g['arch']}; smoke: {c['arch']}", **unset)
    p.add_argument("--width", type=float, help="channel width multiplier (both: 1)", **unset)
    p.add_argument("--T", type=int, help=f"student time window (GPU: {g['T']}; smoke: {c['T']})", **unset)
    p.add_argument("--teacher-epochs", type=int, help=f"GPU: {g['teacher_epochs']}; smoke: {c['teacher_epochs']}",
                   **unset)
    p.add_argument("--epochs", type=int, help=f"most student epochs (GPU: {g['epochs']}; smoke: {c['epochs']})",
                   **unset)
    p.add_argument("--batch-size", type=int, help=f"student batch (GPU: {g['batch_size']}; smoke: {c['batch_size']})",
                   **unset)
    p.add_argument("--teacher-batch-size", type=int,
                   help=f"GPU: {g['teacher_batch_size']}; smoke: {c['teacher_batch_size']}", **unset)
    p.add_argument("--target", type=float,
                   help=f"student test accuracy to reach (GPU: {g['target']}; smoke: {c['target']})", **unset)
    p.add_argument("--amp", choices=AMP_MODES, help="bf16 on CUDA, off on a CPU", **unset)
    p.add_argument("--no-channels-last", action="store_true", help="keep NCHW (otherwise channels_last on CUDA)")
    p.add_argument("--allow-cpu", action="store_true",
                   help="on a CPU, run a tiny smoke configuration (digits) instead of refusing")
    p.add_argument("--seed", type=int, default=0)


def setting(args, cuda: bool) -> dict:
    """The run's settings: the GPU setting (or the smoke one on a CPU), overridden by given flags."""
    chosen = dict(GPU_SETTING if cuda else SMOKE_SETTING)
    for key in chosen:
        value = getattr(args, key, None)
        if value is not None:
            chosen[key] = value
    chosen["amp"] = getattr(args, "amp", None) or ("bf16" if cuda else "off")
    chosen["channels_last"] = cuda and not args.no_channels_last
    return chosen


def run(args, log) -> dict:
    from ..train import resolve_device
    from . import environment
    from ..workflow import train_student, train_teacher
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    if not cuda and not args.allow_cpu:
        raise SpiketandemError("bench time-to-accuracy trains a full VGG-11 on CIFAR-10 and needs a CUDA GPU (on this "
                               "CPU it would take days); run it with --device cuda on a GPU machine, or pass "
                               "--allow-cpu for a tiny smoke configuration (digits) whose time means nothing")
    s = setting(args, cuda)
    if not 0 < s["target"] <= 1:
        raise SpiketandemError(f"--target must be a test accuracy in (0, 1], got {s['target']}")
    work = Path(args.out) / "time-to-accuracy-runs"
    common = dict(dataset=s["dataset"], data_dir=getattr(args, "data_dir", None), arch=s["arch"], width=s["width"], seed=args.seed,
                  device=str(device), amp=s["amp"], channels_last=s["channels_last"], progress=False)
    teacher_run = RunFolder(work / "teacher")
    teacher_cfg = make_config({**common, "rule": "ann", "epochs": s["teacher_epochs"],
                               "batch_size": s["teacher_batch_size"], "out": str(teacher_run.path)})
    student_run = RunFolder(work / "student")
    student_cfg = make_config({**common, "rule": "ltl-offline", "T": s["T"], "eval_T": [s["T"]], "epochs": s["epochs"],
                               "batch_size": s["batch_size"], "teacher": str(teacher_run.file("teacher.pt")),
                               "out": str(student_run.path)})
    quiet = lambda *a, **k: None  # noqa: E731 -- the phases' own epoch lines are replaced by ours below
    hit = {}
    t0 = time.perf_counter()
    log(f"teacher: {s['arch']} (width {s['width']}) on {s['dataset']}, {s['teacher_epochs']} epochs, amp {s['amp']}, "
        f"channels_last {s['channels_last']}, device {device}")
    teacher = train_teacher(teacher_cfg, teacher_run, log=quiet)
    teacher_seconds = time.perf_counter() - t0
    log(f"teacher done: test accuracy {teacher['student_acc']:.4f} after {teacher_seconds:.1f} s")

    def on_epoch_end(row: dict) -> bool:
        elapsed = time.perf_counter() - t0
        log(f"student epoch {row['epoch']}: test accuracy {row['test_acc']:.4f} at {elapsed:.1f} s")
        if row["test_acc"] >= s["target"] and not hit:
            hit.update(epoch=row["epoch"], seconds=elapsed, accuracy=row["test_acc"])
            return True
        return False

    train_student(student_cfg, student_run, log=quiet, on_epoch_end=on_epoch_end)
    rows = [{"phase": "teacher", "epochs": s["teacher_epochs"], "seconds": teacher_seconds,
             "test_acc": teacher["student_acc"]},
            {"phase": "student", "rule": "ltl-offline", "T": s["T"], "epochs_to_target": hit.get("epoch"),
             "seconds_at_target": hit.get("seconds"), "test_acc_at_target": hit.get("accuracy"),
             "epochs_run": len(student_run.read_metrics()),
             "final_test_acc": student_run.read_metrics()[-1]["test_acc"] if student_run.read_metrics() else None}]
    reached = bool(hit)
    log(f"target {s['target']:.2f} " + (f"reached after {hit['seconds']:.1f} s (student epoch {hit['epoch']})"
                                        if reached else f"not reached in {s['epochs']} student epochs"))
    return {"benchmark": NAME, "smoke": not cuda, "setting": s, "rows": rows, "target": s["target"],
            "reached": reached, "seconds_to_target": hit.get("seconds"),
            "target_seconds": TARGET_SECONDS if cuda else None,
            "within_target": (hit["seconds"] < TARGET_SECONDS) if reached and cuda else None,
            "run_dirs": {"teacher": str(teacher_run.path), "student": str(student_run.path)},
            "environment": environment(device)}
