"""`spiketandem export RUN OUT --target speck`: the run's student mapped onto SynSense Speck (``speck.py``),
optionally calibrated on the chip's grid first (``speck_calibrate.py``), written as OUT/speck.json and
OUT/speck_network.pt, and the report's table."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from ..errors import SpiketandemError
from ..data.feeding import evaluation_tensors
from .options import SPECK_WEIGHT_BITS


def export_speck_run(run_dir, out, *, overwrite: bool = False, n: int | None = None, log=None,
                     calibrate: bool = False, calibrate_epochs: int = 1, calibrate_lr: float | None = None,
                     calibrate_batch_size: int | None = None) -> dict:
    """``export RUN OUT --target speck``: OUT is a folder with ``speck.json`` (the report: cores and memories,
    input encoding, accuracy float vs discretized, integer-exact spike counts) and ``speck_network.pt`` (each
    core's integer weights, biases, thresholds and floor; ``torch.load(..., weights_only=True)``), plus
    ``samna_config.json`` where the real samna is installed.

    ``calibrate`` (``--weight-bits 8``): the student is first mapped as trained ("before"), then calibrated by
    online LTL against the run's teacher with the chip's discretization in its forward pass
    (``speck_calibrate.calibrate_on_speck``, ``calibrate_epochs`` epochs on the run's training images, never on
    the test or the run's validation images), and mapped again; OUT holds the calibrated network and the report
    both accuracies (``report["calibration"]``)."""
    from ..data.feeding import hold_out
    from ..runs import RunFolder, atomic_save, atomic_text
    from ..student import Student
    from ..teachers import load_teacher
    from ..workflow import load_run, prepare
    from .speck import export_speck
    log = log or (lambda *a, **k: None)
    out = Path(out)
    if out.exists() and not overwrite:
        raise SpiketandemError(f"{out} exists; choose another OUT or pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise SpiketandemError(f"{out} is a file; with --target speck OUT names a folder to write")
    cfg, rule, info, _ = load_run(run_dir, "cpu")
    if not isinstance(getattr(rule, "model", None), Student):
        raise SpiketandemError(f"{run_dir} holds a {cfg.rule} model, not a spiking student; export a run of a spiking "
                               "rule (e.g. `spiketandem train --rule ltl-offline`)")
    if calibrate and rule.teacher is None:
        if not RunFolder(run_dir).file("teacher.pt").is_file():
            raise SpiketandemError(f"--target speck --weight-bits {SPECK_WEIGHT_BITS} calibrates by LTL against the "
                                   f"run's teacher, but {run_dir} has no teacher.pt; export it without --weight-bits, "
                                   "or train the student with a teacher (e.g. --rule ltl-offline)")
        rule.teacher = load_teacher(RunFolder(run_dir).file("teacher.pt"), info, "cpu")[0]
    validation = cfg.validation
    run_cfg = cfg
    # held out: the run's own validation images (never trained on) where it kept some (--validation N: they are
    # its config's test split), else a tenth of the training images (seen in training: a larger sample than
    # digits' 360 test images, not unseen)
    if validation:
        held = evaluation_tensors(prepare(cfg)[1], cfg, n)
        cfg = dataclasses.replace(cfg, validation=None)
    cfg, data, info, _ = prepare(cfg)
    test = evaluation_tensors(data, cfg, n)
    if not validation:
        held = evaluation_tensors(hold_out(data, 0.1, cfg.seed, "the held-out fraction")[1], cfg, n)
    report = export_speck(rule.model, int(cfg.T), test, held, seed=cfg.seed, log=log)
    if calibrate:
        import torch
        from .speck import input_peak
        from .speck_calibrate import calibrate_on_speck
        before = report
        rate = rule.model.encoding == "rate"
        peak = input_peak(torch.cat([test[0], held[0]])) if rate else None
        # trained on the run's training images (less its --validation images, which stay unseen)
        train_cfg, train_data, _, _ = prepare(run_cfg)
        student, calibration = calibrate_on_speck(train_cfg, rule, info, train_data, torch.device("cpu"), peak=peak,
                                                  readout_threshold=before["readout"]["threshold_float"],
                                                  epochs=calibrate_epochs, lr=calibrate_lr,
                                                  batch_size=calibrate_batch_size, log=log)
        report = export_speck(student, int(cfg.T), test, held, seed=cfg.seed, log=log)
        keys = ("float_student", "float_chip_network", "discretized_single_spike", "discretized_multi_spike")
        calibration.update({"before": {k: before["accuracy"][k] for k in keys},
                            "after": {k: report["accuracy"][k] for k in keys},
                            "readout_threshold_before": before["readout"]["threshold_float"]})
        report["calibration"] = calibration
    report["held_out"] = (f"the run's {validation} validation images (--validation), never trained on" if validation
                          else "a tenth of the training images (seen in training; train with --validation N for "
                               "unseen ones)")
    net, params = report.pop("network"), report.pop("parameters")
    out.mkdir(parents=True, exist_ok=True)
    from .speck import SPECK_FORMAT
    atomic_save({"format": SPECK_FORMAT, "chip": report["chip"], "T": report["T"], "layers": params},
                out / "speck_network.pt")
    if report["samna"]["usable"]:
        # the chip starts each sample from the starting membranes (sinabs writes the layers' current states)
        for (_, layer), start in zip(sorted(net.dynapcnn_layers.items()), report["integer_layers"]):
            layer.spk_layer.init_state_with_shape((1, *layer.get_neuron_shape()))
            layer.spk_layer.v_mem.fill_(float(start["start"]))
        config = net.make_config(device=report["chip"])
        atomic_text(config.to_json(), out / "samna_config.json")
        report["samna_config"] = str(out / "samna_config.json")
    else:
        report["samna_config"] = None
    report["path"] = str(out)
    report["run"] = str(run_dir)
    atomic_text(json.dumps(report, indent=1) + "\n", out / "speck.json")
    return report


def speck_table(report: dict) -> str:
    """The Speck report as text: cores and memories, accuracy, spike-count agreement."""
    lines = [f"{'layer':10} {'core':>4} {'kernel':>14} {'neuron':>14} {'bias':>10}"]
    for r in report["resources"]["layers"]:
        lines.append(f"{r['layer']:10} {r['core']:>4} {r['kernel']:>6}/{r['kernel_limit']:<7} "
                     f"{r['neuron']:>6}/{r['neuron_limit']:<7} {r['bias']:>4}/{r['bias_limit']:<5}")
    acc = report["accuracy"]
    seen = "rate spikes as ON/OFF events" if report["input"]["encoding"] == "rate" else "the event frames as events"
    lines.append(f"input: {seen}; readout threshold "
                 f"{report['readout']['threshold_float']:.4g} (chosen on the held-out images)")
    for key in ("float_student", "float_chip_network", "discretized_single_spike", "discretized_multi_spike"):
        lines.append(f"{key:26} test {100 * acc[key]['test']:6.2f}%   held-out {100 * acc[key]['held_out']:6.2f}%")
    cal = report.get("calibration")
    if cal:
        lines.append(f"calibration on the chip's grid ({cal['epochs']} epoch(s) of online LTL against the teacher, "
                     f"epoch {cal['chosen_epoch']} kept):")
        for key in ("float_student", "discretized_single_spike", "discretized_multi_spike"):
            b, a = cal["before"][key], cal["after"][key]
            lines.append(f"  {key:24} test {100 * b['test']:6.2f}% -> {100 * a['test']:6.2f}%   "
                         f"held-out {100 * b['held_out']:6.2f}% -> {100 * a['held_out']:6.2f}%")
    for mode, rows in report["verify"].items():
        same = all(r["identical"] for r in rows)
        lines.append(f"integer simulation vs sinabs ({mode.replace('_', ' ')}): "
                     + ("identical per-neuron spike counts in every layer" if same else
                        "; ".join(f"{r['layer']}: {r['neurons_differing']} neurons differ" for r in rows
                                  if not r["identical"])))
    over = [r["layer"] for r in report["integer_layers"] if not r["membrane_within_16_bit"]]
    if over:
        lines.append(f"membranes above the chip's 16-bit range (32767) in {', '.join(over)}: the chip saturates "
                     "where these simulations do not")
    lines.append("samna: " + ("config written" if report["samna_config"] else report["samna"]["why"]))
    return "\n".join(lines)
