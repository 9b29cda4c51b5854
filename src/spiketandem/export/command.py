"""`spiketandem export RUN_DIR --format nir OUT.nir`: write a trained student for other tools."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import SpiketandemError
from .nir_export import DEFAULT_DT, write_nir

FORMATS = ("nir",)


def export_run(run_dir: str | Path, out: str | Path, fmt: str = "nir", dt: float = DEFAULT_DT,
               allow_subtract_reset: bool = False, device: str = "cpu") -> Path:
    """Load RUN_DIR's trained student and write it to ``out`` in ``fmt``; returns the path."""
    from ..pipeline import load_run
    from ..student import Student
    if fmt not in FORMATS:
        raise SpiketandemError(f"export format {fmt!r} is not one of {FORMATS}")
    cfg, rule, info, _ = load_run(run_dir, device)
    student = rule.model
    if not isinstance(student, Student):
        raise SpiketandemError(f"{run_dir} holds a {cfg.rule} model, not a spiking student; export a run of a spiking "
                               "rule (e.g. `spiketandem train --rule ltl-offline`)")
    meta = {"producer": "spiketandem", "rule": cfg.rule, "dataset": cfg.dataset, "arch": cfg.arch, "T": int(cfg.T),
            "num_classes": info.num_classes}
    stats = _normalisation(cfg)
    if stats:
        meta.update(stats)
    return write_nir(student.eval(), out, dt=dt, allow_subtract_reset=allow_subtract_reset, extra_metadata=meta)


def _normalisation(cfg) -> dict:
    """The per-channel mean/std the input must be normalised with (when the dataset can be loaded)."""
    try:
        from ..data import load_dataset
        data = load_dataset(cfg.dataset, cfg.data_dir, download=False)
    except Exception:  # the data may be absent where the model is exported; the graph is still valid
        return {}
    return {"input_mean": [float(v) for v in data.mean], "input_std": [float(v) for v in data.std]}


def cmd_export(args) -> None:
    path = export_run(args.run_dir, args.out, args.format, args.dt, args.allow_subtract_reset, args.device or "cpu")
    if args.json:
        print(json.dumps({"path": str(path), "format": args.format, "dt": args.dt}))
    else:
        print(f"wrote {path} ({args.format}, dt={args.dt} s); read it with nir.read({str(path)!r})")


def register(sub) -> None:
    p = sub.add_parser("export", help="write a trained student as a NIR graph for other SNN tools and chips",
                       description="Write RUN_DIR's trained student to OUT in an interchange format (NIR: "
                       "conv/affine/pool/flatten + IF/LIF nodes; spike amplitudes folded into the next weights). "
                       "See docs/nir.md.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--format", choices=FORMATS, default="nir")
    p.add_argument("--dt", type=float, default=DEFAULT_DT,
                   help=f"NIR time step in seconds (default {DEFAULT_DT}, the step snnTorch's importer assumes); the "
                        "LIF time constant is tau = dt / (1 - leak)")
    p.add_argument("--allow-subtract-reset", action="store_true",
                   help="export a reset-by-subtraction student, marking reset='subtract' in the metadata (NIR's "
                        "own IF/LIF reset to v_reset; see docs/nir.md)")
    p.add_argument("--device", help="cpu (default) or cuda")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_export)
