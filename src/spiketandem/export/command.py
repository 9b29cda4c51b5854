"""`spiketandem export RUN_DIR OUT`: write a trained student for other tools and chips (NIR).

Optionally first make it deployable (``--retarget zero-reset``, ``--weight-bits k``: both recovered by
LTL through ``train.fit``, in memory), and afterwards check the written file in other simulators
(``--verify``).  The run folder is only read: the one file written is OUT.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import SpiketandemError
from .options import (DEFAULT_DT, FLAVOURS, FORMATS, IMPORTERS, QUANT_MODES, RETARGETS, SPECK_WEIGHT_BITS, TARGETS,
                      WEIGHT_QUANT_DEFAULT)


def export_run(run_dir: str | Path, out: str | Path, fmt: str = "nir", dt: float = DEFAULT_DT,
               allow_subtract_reset: bool = False, device: str = "cpu", *, flavour: str = "nir",
               retarget: str | None = None, calibrate_epochs: int | None = None, calibrate_lr: float | None = None,
               calibrate_batch_size: int | None = None, weight_bits: int | None = None,
               weight_quant: str = WEIGHT_QUANT_DEFAULT, verify: bool = False, verify_n: int | None = None,
               importers=IMPORTERS, overwrite: bool = False, target: str | None = None, log=None) -> dict:
    """Load RUN_DIR's trained student, optionally retarget it to reset-to-zero and/or k-bit weights
    (recovering accuracy by LTL against the run's teacher), write it to ``out`` and optionally verify the
    file in other simulators.  Returns a report: {"path", "format", "dt", "flavour", "retarget",
    "weight_quantization", "verify"} (the last three where asked)."""
    from ..teachers import load_teacher
    from ..workflow import load_run, prepare
    from ..runs import RunFolder
    from ..student import Student
    from .nir_export import refuse_membrane_start, write_nir
    from .nir_graph import refuse_attention_products
    log = log or (lambda *a, **k: None)
    asked = calibrate_epochs is not None or calibrate_lr is not None or calibrate_batch_size is not None
    calibrate_epochs = 1 if calibrate_epochs is None else calibrate_epochs
    if calibrate_epochs < 0:
        raise SpiketandemError(f"--calibrate-epochs must be >= 0, got {calibrate_epochs}")
    if calibrate_batch_size is not None and calibrate_batch_size < 1:
        raise SpiketandemError(f"--calibrate-batch-size must be >= 1, got {calibrate_batch_size}")
    if calibrate_lr is not None and not calibrate_lr > 0:
        raise SpiketandemError(f"--calibrate-lr must be > 0, got {calibrate_lr}")
    if verify_n is not None and verify_n < 1:
        raise SpiketandemError(f"--verify-n must be >= 1, got {verify_n}")
    if target is not None:
        if target not in TARGETS:
            raise SpiketandemError(f"--target {target!r} is not one of {', '.join(TARGETS)}")
        if retarget is not None or verify:
            raise SpiketandemError("--target speck maps the student as trained (sinabs discretizes it and the export "
                                   "verifies it); drop --retarget and --verify")
        if weight_bits is not None and weight_bits != SPECK_WEIGHT_BITS:
            raise SpiketandemError(f"--target speck: Speck's weights are {SPECK_WEIGHT_BITS}-bit (sinabs' "
                                   f"discretization); pass --weight-bits {SPECK_WEIGHT_BITS} to calibrate on the "
                                   f"chip's grid, or leave it out, not --weight-bits {weight_bits}")
        if weight_quant != WEIGHT_QUANT_DEFAULT:
            raise SpiketandemError(f"--target speck: the chip's grid is sinabs' (one scale per layer, zero exact); "
                                   f"drop --weight-quant {weight_quant}")
        if asked and weight_bits is None:
            raise SpiketandemError(f"--target speck: --calibrate-epochs/--calibrate-lr/--calibrate-batch-size "
                                   f"set the calibration on the chip's grid, which --weight-bits {SPECK_WEIGHT_BITS} "
                                   "asks for; add it, or drop them")
        from .speck_run import export_speck_run
        return export_speck_run(run_dir, out, overwrite=overwrite, n=verify_n, log=log,
                                calibrate=weight_bits is not None, calibrate_epochs=calibrate_epochs,
                                calibrate_lr=calibrate_lr, calibrate_batch_size=calibrate_batch_size)
    if fmt not in FORMATS:
        raise SpiketandemError(f"export format {fmt!r} is not one of {FORMATS}")
    if retarget is not None and retarget not in RETARGETS:
        raise SpiketandemError(f"--retarget {retarget!r} is not one of {', '.join(RETARGETS)}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise SpiketandemError(f"{out} exists; choose another OUT or pass --overwrite to replace it")
    if out.is_dir():
        raise SpiketandemError(f"{out} is a folder; OUT names the file to write (e.g. {out / 'student.nir'})")
    cfg, rule, info, dev = load_run(run_dir, device)
    if not isinstance(getattr(rule, "model", None), Student):
        raise SpiketandemError(f"{run_dir} holds a {cfg.rule} model, not a spiking student; export a run of a spiking "
                               "rule (e.g. `spiketandem train --rule ltl-offline`)")
    refuse_attention_products(rule.model)  # before any retraining: no NIR form whatever the retarget
    start = max(rule.model.membrane_inits().values())
    if retarget != "zero-reset":
        refuse_membrane_start(rule.model, f"{run_dir}: its student")
    meta = {"producer": "spiketandem", "rule": cfg.rule, "dataset": cfg.dataset, "arch": cfg.arch, "T": int(cfg.T),
            "num_classes": info.num_classes}
    report: dict = {"format": fmt, "dt": dt, "flavour": flavour}
    needs_data = verify or weight_bits is not None or retarget is not None
    data = None
    if needs_data:
        cfg, data, info, dev = prepare(cfg)
        meta.update(input_mean=[float(v) for v in data.mean], input_std=[float(v) for v in data.std])
    else:
        meta.update(_normalisation(cfg))
    student, run_lr = rule.model, cfg.lr
    if retarget == "zero-reset":
        if all(n.config.reset == "zero" for n in student.neurons.values()) and not start:
            report["retarget"] = {"to_reset": "zero", "note": "the student already resets to zero from v = 0; "
                                                              "nothing to do"}
            log("retarget zero-reset: the student already resets to zero from v = 0; nothing to do")
        else:
            from .retarget import retarget_zero_reset
            if rule.teacher is None and RunFolder(run_dir).file("teacher.pt").is_file():
                rule.teacher = load_teacher(RunFolder(run_dir).file("teacher.pt"), info, dev)[0]
            rule, cfg, report["retarget"] = retarget_zero_reset(cfg, rule, info, data, dev, epochs=calibrate_epochs,
                                                                lr=calibrate_lr, batch_size=calibrate_batch_size,
                                                                log=log)
            student = rule.model
            log(f"retarget zero-reset: test accuracy {100 * report['retarget']['accuracy_subtract_reset']:.2f}% "
                f"(reset by subtraction) -> {100 * report['retarget']['accuracy_after']:.2f}% (reset to zero, "
                f"epoch {report['retarget']['chosen_epoch']} of {calibrate_epochs} kept)")
    if weight_bits is not None:
        from .retarget import quantize_weights
        student, report["weight_quantization"] = quantize_weights(cfg, rule, info, data, dev, bits=weight_bits,
                                                                  mode=weight_quant, epochs=calibrate_epochs,
                                                                  lr=calibrate_lr or run_lr,
                                                                  batch_size=calibrate_batch_size, log=log)
        q = report["weight_quantization"]
        log(f"{weight_bits}-bit weights: test accuracy {100 * q['accuracy_float_weights']:.2f}% (float) -> "
            f"{100 * q['accuracy_quantized_uncalibrated']:.2f}% (quantized) -> {100 * q['accuracy_after']:.2f}% "
            f"(calibrated, epoch {q['chosen_epoch']} kept)")
    for key in ("retarget", "weight_quantization"):
        if key in report:
            meta[key] = _metadata_safe(report[key])
    student = student.cpu().eval()
    path = write_nir(student, out, dt=dt, allow_subtract_reset=allow_subtract_reset, extra_metadata=meta,
                     flavour=flavour, weight_bits=weight_bits)
    report["path"] = str(path)
    if verify:
        from .verify import verify_nir
        from ..data.feeding import evaluation_tensors
        images, labels = evaluation_tensors(data, cfg, verify_n)
        report["verify"] = verify_nir(path, student, images, labels, cfg.T, importers)
    return report


def _normalisation(cfg) -> dict:
    """The per-channel mean/std the input must be normalised with (when the dataset can be loaded)."""
    try:
        from ..data import load_dataset
        data = load_dataset(cfg.dataset, cfg.data_dir, download=False)
    except Exception:  # the data may be absent where the model is exported; the graph is still valid
        return {}
    return {"input_mean": [float(v) for v in data.mean], "input_std": [float(v) for v in data.std]}


def _metadata_safe(value):
    """A report as NIR (HDF5) metadata can hold it: no None, lists of records as numbered groups."""
    if isinstance(value, dict):
        return {str(k): _metadata_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        if any(isinstance(v, (dict, list, tuple)) for v in value):
            return {str(i): _metadata_safe(v) for i, v in enumerate(value)}
        return [v for v in value if v is not None]
    return value


def cmd_export(args) -> None:
    quiet = args.json or args.quiet

    def log(*a, **k):
        if not args.quiet:
            print(*a, file=sys.stderr if quiet else sys.stdout, **k)
    report = export_run(args.run_dir, args.out, args.format, args.dt, args.allow_subtract_reset, args.device or "cpu",
                        flavour=args.flavour, retarget=args.retarget, calibrate_epochs=args.calibrate_epochs,
                        calibrate_lr=args.calibrate_lr,
                        calibrate_batch_size=args.calibrate_batch_size, weight_bits=args.weight_bits, weight_quant=args.weight_quant,
                        verify=args.verify, verify_n=args.verify_n, importers=args.verify_with,
                        overwrite=args.overwrite, target=args.target, log=log)
    if args.json:
        print(json.dumps(report))
        return
    if args.target:
        from .speck_run import speck_table
        print(speck_table(report))
        print(f"wrote {report['path']}/speck.json and speck_network.pt")
        return
    print(f"wrote {report['path']} ({args.format}, flavour {args.flavour}, dt={args.dt} s); read it with "
          f"nir.read({report['path']!r})")
    if "verify" in report:
        from .verify import verify_table
        print(verify_table(report["verify"]))


def register(p) -> None:
    """The arguments of `spiketandem export` (its parser, made by ``cli.build_parser``)."""
    p.description = ("Write RUN_DIR's trained student to OUT in an interchange format (NIR: conv/affine/pool/flatten "
                     "+ IF/LIF nodes, residual additions as multi-input nodes; spike amplitudes folded into the next "
                     "weights). Optionally retarget it for a chip first (--retarget zero-reset, --weight-bits) and "
                     "check the written file in other simulators (--verify). Only OUT is written; the run folder is "
                     "read. See docs/nir.md.")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--format", choices=FORMATS, default="nir")
    p.add_argument("--target", choices=TARGETS,
                   help="speck: map the student onto SynSense Speck through sinabs (IF neurons; rate-encoded input as "
                        "ON/OFF events, or event frames as they are): OUT is a folder with the per-core memory report, the accuracy of the "
                        "discretized network next to the float student's, and the integer-exact spike-count check "
                        "(--verify-n N: on N images); refuses a student that does not fit, naming the layer")
    p.add_argument("--dt", type=float, default=DEFAULT_DT,
                   help=f"NIR time step in seconds (default {DEFAULT_DT}, the step snnTorch's importer assumes); the "
                        "LIF time constant is tau = dt / (1 - leak)")
    p.add_argument("--flavour", choices=FLAVOURS, default="nir",
                   help="nir (default): IF layers as NIR IF nodes (r = 1/dt; Norse, SpikingJelly); snntorch: IF layers "
                        "as LIF nodes with tau = 2^40 dt, a leak of exactly 1 in float32, which snnTorch's importer "
                        "reads (it refuses IF nodes with r != 1); needs --dt 1e-4")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    g = p.add_argument_group("deployment (recovered by LTL against the run's teacher; nothing is written to RUN_DIR)")
    g.add_argument("--retarget", choices=RETARGETS,
                   help="zero-reset: turn a reset-by-subtraction student (the paper's default, which NIR cannot "
                        "express) into a reset-to-zero one: thresholds re-balanced to the same spike counts, then "
                        "offline LTL against the run's teacher for --calibrate-epochs epochs; the file's metadata "
                        "records what was done and the accuracy before and after")
    g.add_argument("--weight-bits", type=int, metavar="K",
                   help="quantize every conv/linear weight to K bits (2..16, per layer; hardware.noise.quantize) and "
                        "calibrate by on-chip online LTL for --calibrate-epochs epochs. With --target speck only 8, "
                        "the chip's grid: calibrate with sinabs' discretization (8-bit weights and biases, one scale "
                        "per layer) in the forward pass, then map; the report gives accuracy before and after")
    g.add_argument("--weight-quant", choices=QUANT_MODES, default=WEIGHT_QUANT_DEFAULT,
                   help="the K-bit grid: symmetric (default: integers times a step, zero exact, as chips store "
                        "synapses) or minmax (2^K levels from the layer's min to max)")
    g.add_argument("--calibrate-epochs", type=int, metavar="N",
                   help="epochs of LTL for --retarget and for --weight-bits (default 1; 0: none). The epoch kept is "
                        "the best on a held-out tenth of the training images (0 = unchanged)")
    g.add_argument("--calibrate-lr", type=float, metavar="LR",
                   help="Adam learning rate of that LTL (default: 1e-4 for --retarget; the run's, else 1e-3, for "
                        "--weight-bits, as `spiketandem noise`)")
    g.add_argument("--calibrate-batch-size", type=int, metavar="B",
                   help="batch size of that LTL (default: the run's); a smaller batch takes more steps in an epoch")
    p.add_argument("--allow-subtract-reset", action="store_true",
                   help="export a reset-by-subtraction student as is, marking reset='subtract' in the metadata (NIR's "
                        "own IF/LIF reset to v_reset; see docs/nir.md); --retarget zero-reset is the deployable way")
    g = p.add_argument_group("verification")
    g.add_argument("--verify", action="store_true",
                   help="load the written file in Norse, snnTorch and SpikingJelly (those installed) and the project's "
                        "NIR reference simulator, run the test images and report per importer the accuracy and the "
                        "agreement of per-layer spike counts with spiketandem's forward")
    g.add_argument("--verify-n", type=int, metavar="N", help="verify on the first N test images (default: all)")
    g.add_argument("--verify-with", nargs="+", choices=IMPORTERS, default=list(IMPORTERS), metavar="IMPORTER",
                   help=f"importers to verify with (default: all of {', '.join(IMPORTERS)})")
    p.add_argument("--device", help="cpu (default) or cuda (for --retarget / --weight-bits training)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_export)
