"""`spiketandem noise RUN_DIR --kind ...`: a hardware-noise sweep with on-chip calibration (Fig. 4)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..choices import CALIBRATION_METHODS as METHODS, NOISE_KINDS as KINDS, NOISE_PAPER_LEVELS as PAPER_LEVELS
from ..choices import QUANT_MODES, SILENCE_MODES


def register(p) -> None:
    """The arguments of `spiketandem noise` (its parser, made by ``cli.build_parser``)."""
    levels = "; ".join(f"{k} {' '.join(f'{v:g}' for v in PAPER_LEVELS[k])}" for k in KINDS)
    p.description = ("Imprint RUN_DIR's trained student on simulated noisy chips (one per --seeds), measure its "
                     "accuracy, calibrate it by online LTL and by hardware-in-the-loop training for "
                     "--calibrate-epochs epochs, and report accuracy before, after the first epoch and the best "
                     f"epoch, per level (the LTL paper's Fig. 4). Default levels: {levels}.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a trained run folder (student.pt + teacher.pt)")
    p.add_argument("--kind", required=True, choices=KINDS, help="the noise model")
    p.add_argument("--levels", type=float, nargs="+", help="sigma for mismatch/thermal, bits for quantization, "
                   "fraction failing for silencing (default: the paper's levels)")
    p.add_argument("--mode", help=f"quantization: {' or '.join(QUANT_MODES)} (default minmax); silencing: "
                   f"{' or '.join(SILENCE_MODES)} (default step: random failures at every step, as the authors' "
                   "code; fixed: a set of dead neurons per chip)")
    p.add_argument("--calibrate-epochs", type=int, default=1, help="calibration epochs (0: no calibration; default 1)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one simulated chip per seed (default 0)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS),
                   help="ltl: online LTL calibration; hil: hardware-in-the-loop baseline (default both)")
    p.add_argument("--lr", type=float, help="calibration learning rate, Adam (default: the run's, else 1e-3)")
    p.add_argument("--onchip-gate", action="store_true", help="LTL with the gated on-chip update sign(error) x "
                   "boxcar(U)")
    p.add_argument("--out", metavar="DIR", help="where to write noise-<kind>.json/.md/.png (default RUN_DIR)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_noise)


def cmd_noise(args) -> None:
    from ..errors import SpiketandemError
    from ..runs import RunFolder, atomic_text
    from .sweep import plot_sweep, run_sweep, sweep_table
    if args.calibrate_epochs < 0:
        raise SpiketandemError(f"--calibrate-epochs must be >= 0, got {args.calibrate_epochs}")
    if not Path(args.run_dir, "student.pt").is_file():
        raise SpiketandemError(f"{args.run_dir} holds no trained student (student.pt); pass a folder that "
                               "`spiketandem train` or `demo` wrote")
    quiet = args.quiet or args.json

    def log(*a, **k):
        if not args.quiet:
            print(*a, file=sys.stderr if quiet else sys.stdout, **k)
    result = run_sweep(args.run_dir, args.kind, args.levels, seeds=args.seeds, epochs=args.calibrate_epochs,
                       methods=args.methods, mode=args.mode, lr=args.lr, onchip_gate=args.onchip_gate,
                       device=args.device, log=log)
    out = RunFolder(args.out or args.run_dir)
    out.path.mkdir(parents=True, exist_ok=True)
    stem = f"noise-{args.kind}"
    out.write_json(f"{stem}.json", result)
    table = sweep_table(result)
    atomic_text(table + "\n", out.file(f"{stem}.md"))
    plot_sweep(result, out.file(f"{stem}.png"))
    if args.json:
        print(json.dumps(result))
        return
    print()
    print(table)
    print(f"written: {out.file(stem + '.json')}, {out.file(stem + '.md')}, {out.file(stem + '.png')}")
