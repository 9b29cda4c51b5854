"""Training steps with the `spiketandem` command's malloc tuning against glibc's defaults:
``python benchmarks/allocator.py [--rounds 2] [--out benchmarks/results]``.

An allocator setting holds for a whole process, so each measurement is a fresh process: ``bench
ltl-epoch`` (one teacher step and one offline-LTL step alternating, ``--batches`` timed batches), run
``--rounds`` times with the tuning (``spiketandem.allocator.keep_freed_memory``) and as often with
``SPIKETANDEM_MALLOC_TUNING=off``, the two alternating round by round so that a change of the
machine's load falls on both.  Per setting it keeps the median seconds per batch of each rule and,
from the child processes' resource usage, their minor page faults and system-CPU seconds.
``speedup`` = defaults' seconds per batch / tuned seconds per batch, per rule.  The children write
only into a temporary folder, removed afterwards.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

from spiketandem.errors import SpiketandemError

NAME = "allocator"
HELP = "training steps with the CLI's malloc tuning vs glibc's defaults (one process per measurement)"
DESCRIPTION = __doc__
SETTINGS = ("tuned", "glibc defaults")


def add_arguments(p) -> None:
    p.add_argument("--arch", default="vgg11-strided", help="teacher architecture")
    p.add_argument("--width", type=float, default=0.25, help="channel width multiplier")
    p.add_argument("--T", type=int, default=8, help="time window of the student")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--batches", type=int, default=4, help="timed batches per rule in each process")
    p.add_argument("--rounds", type=int, default=2, help="processes per setting (alternating)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def _child_env(setting: str) -> dict:
    from spiketandem.allocator import OPT_OUT
    env = dict(os.environ)
    env.pop(OPT_OUT, None)
    if setting == "glibc defaults":
        env[OPT_OUT] = "off"
    return env


def _measure(args, setting: str, folder: str) -> dict:
    """One child process of ``bench ltl-epoch`` under ``setting``: its result and resource usage."""
    import resource  # POSIX only, like the glibc tuning it measures
    command = [sys.executable, "-m", "spiketandem", "bench", "ltl-epoch", "--arch", args.arch,
               "--width", str(args.width), "--T", str(args.T), "--batch-size", str(args.batch_size),
               "--batches", str(args.batches), "--repeats", "1", "--device", args.device,
               "--out", folder, "--json", "--quiet"]
    if args.threads:
        command += ["--threads", str(args.threads)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, env=_child_env(setting), capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise SpiketandemError(f"bench ltl-epoch failed under {setting}: {last}")
    result = json.loads(done.stdout)
    return {"seconds_per_batch": {row["rule"]: row["seconds_per_batch"] for row in result["rows"]},
            "allocator": result["environment"]["allocator"],
            "minor_faults": after.ru_minflt - before.ru_minflt,
            "system_seconds": after.ru_stime - before.ru_stime,
            "user_seconds": after.ru_utime - before.ru_utime}


def run(args, log) -> dict:
    from spiketandem.bench import load_average
    if args.rounds < 1 or args.batches < 1:
        raise SpiketandemError(f"--rounds {args.rounds} --batches {args.batches}: both must be >= 1 (e.g. --rounds 4 "
                               f"--batches 4)")
    samples = {setting: [] for setting in SETTINGS}
    with tempfile.TemporaryDirectory(prefix="spiketandem-bench-allocator-") as folder:
        for r in range(args.rounds):
            order = SETTINGS if r % 2 == 0 else SETTINGS[::-1]
            for setting in order:
                sample = _measure(args, setting, folder)
                samples[setting].append(sample)
                log(f"round {r + 1}/{args.rounds}, {setting} ({sample['allocator']}): " + ", ".join(
                    f"{rule} {s:.3f} s/batch" for rule, s in sample["seconds_per_batch"].items())
                    + f", {sample['minor_faults']} minor faults, {sample['system_seconds']:.1f} s system")
    rows = []
    for setting, runs in samples.items():
        rules = runs[0]["seconds_per_batch"]
        rows.append({"setting": setting, "allocator": runs[0]["allocator"],
                     "seconds_per_batch": {rule: statistics.median(s["seconds_per_batch"][rule] for s in runs)
                                           for rule in rules},
                     "minor_faults": statistics.median(s["minor_faults"] for s in runs),
                     "system_seconds": statistics.median(s["system_seconds"] for s in runs),
                     "user_seconds": statistics.median(s["user_seconds"] for s in runs),
                     "samples": runs})
    tuned, default = rows
    speedup = {rule: default["seconds_per_batch"][rule] / tuned["seconds_per_batch"][rule]
               for rule in tuned["seconds_per_batch"]}
    log("glibc defaults / tuned, seconds per batch: "
        + ", ".join(f"{rule} {s:.2f}x" for rule, s in speedup.items()))
    return {"benchmark": NAME, "arch": args.arch, "width": args.width, "T": args.T, "batch_size": args.batch_size,
            "timed_batches": args.batches, "rounds": args.rounds, "rows": rows, "speedup": speedup,
            "load_average": load_average()}


if __name__ == "__main__":
    from spiketandem.bench import script_main
    sys.exit(script_main(sys.modules[__name__]))
