"""`spiketandem bench NAME`: performance measurements, one module per benchmark.

A benchmark module defines ``NAME``, ``HELP``, ``DESCRIPTION``, ``add_arguments(parser)`` and
``run(args, log) -> dict``; the dict (one JSON object, with a ``rows`` list) is written to
``OUT/NAME.json`` and, with ``--json``, printed.  Add a benchmark by listing its module here.  The command
holds what a user measures; one-off measurement kits live in ``benchmarks/`` as scripts of the same shape,
run by :func:`script_main`.
"""
from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
from pathlib import Path

from ..runs import atomic_text

BENCHMARKS: tuple[str, ...] = (
    "spiketandem.bench.complexity",
    "spiketandem.bench.neuron",
    "spiketandem.bench.ltl_epoch",
    "spiketandem.bench.time_to_accuracy",
)
DEFAULT_OUT = "benchmarks/results"


def environment(device) -> dict:
    """What the numbers were measured on (``device``: a torch.device)."""
    import torch
    from ..allocator import in_effect
    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
            "cpu_threads": torch.get_num_threads(), "allocator": in_effect()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def load_average() -> list | None:
    """The machine's 1/5/15-minute load averages, recorded with every timing (others' work slows what is timed)."""
    import os
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def _run(module, args) -> None:
    log = (lambda *a, **k: None) if args.quiet else (lambda *a, **k: print(*a, file=sys.stderr if args.json else
                                                                              sys.stdout, **k))
    result = module.run(args, log)
    out = Path(args.out)
    atomic_text(json.dumps(result, indent=1) + "\n", out / f"{module.NAME}.json")
    if args.json:
        print(json.dumps(result))
    else:
        log(f"results: {out / (module.NAME + '.json')}")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults and keeps the benchmark's description as written."""


def _common_flags(p) -> None:
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help="folder for NAME.json and plots")
    p.add_argument("--json", action="store_true", help="print the results as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def script_main(module, argv=None) -> int:
    """Run a benchmark module as a script of its own (the one-off kits in ``benchmarks/``): the flags and
    the ``OUT/NAME.json`` of `spiketandem bench`; a refusal is one line and exit code 2."""
    from ..errors import SpiketandemError
    p = argparse.ArgumentParser(prog=f"{module.NAME}", description=module.DESCRIPTION, formatter_class=_Formatter)
    module.add_arguments(p)
    _common_flags(p)
    args = p.parse_args(argv)
    try:
        _run(module, args)
    except SpiketandemError as e:
        print(f"{module.NAME}: error: {e}", file=sys.stderr)
        return 2
    return 0


def register(parser) -> None:
    """The benchmarks of `spiketandem bench` (its parser, made by ``cli.build_parser``), one subcommand each."""
    parser.description = "Measure memory and time; each benchmark writes OUT/NAME.json."
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for path in BENCHMARKS:
        module = importlib.import_module(path)
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.DESCRIPTION,
                           formatter_class=_Formatter)
        module.add_arguments(p)
        _common_flags(p)
        p.set_defaults(func=lambda args, module=module: _run(module, args))
