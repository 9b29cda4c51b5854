"""Make a trained student deployable before export: reset to zero, low-precision weights.

``retarget_zero_reset``: NIR 1.0's IF/LIF nodes reset the membrane to ``v_reset`` and start it at 0; the
paper's (and our default) reset subtracts the threshold, and a low-latency student starts its membranes
at a fraction of the threshold (``--membrane-init``), which the retargeted student gives up as well.
The same weights with reset to zero lose the residual charge above threshold at every spike, so the
student fires less and loses accuracy.  It is recovered in two
steps: the zero-reset copy's thresholds are re-balanced layer by layer so that each layer fires as many
spikes as the subtract-reset student on calibration images (``balance_thresholds``), then the copy is
trained for a few epochs by offline LTL (``ltl-offline``) against the run's own teacher through the one
training loop ``train.fit`` (in memory: the run folder is never written).

``quantize_weights``: a chip with k-bit synapses is simulated by ``hardware.Chip`` with a quantization
``NoiseSpec`` (the forward sees k-bit weights, float shadows learn through a straight-through estimator)
and calibrated by the hardware package's online LTL (``hardware.calibrate.calibration_rule``); the
exported weights are the k-bit ones.

Both keep, of the starting state and each epoch, the one that does best on a held-out tenth of the
training images (``_fit_and_select``), and return a report of the accuracies before and after, which
the exported file's metadata records.
"""
from __future__ import annotations

import copy

import torch

from ..errors import SpiketandemError
from ..student import Student
from .options import QUANT_MODES, WEIGHT_QUANT_DEFAULT


def _quiet_log(*args, **kwargs):
    return None


VALIDATION_FRACTION = 0.1
BALANCE_IMAGES = 256
RETARGET_LR = 1e-4  # a tenth of offline LTL's default: the student is already trained


def _test_count(data) -> int:
    """How many samples the evaluation split of ``data`` holds (a built-in dataset, or the user's ``UserData``)."""
    from ..data.user_data import UserData
    if isinstance(data, UserData):
        return len(UserData._dataset(data.test))
    return len(data.test_y)


def _accuracy(rule, data, cfg, device) -> float:
    from ..data.feeding import evaluation_batches
    from ..train import evaluate
    return float(evaluate(rule, evaluation_batches(data, cfg, device), [cfg.T])[cfg.T])


@torch.no_grad()
def balance_thresholds(student, reference, images, T: int, steps: int = 8) -> dict[str, float]:
    """Scale each layer's threshold of ``student`` (reset to zero), from the input on, so that the layer fires
    as many spikes on ``images`` as ``reference`` (the same weights, reset by subtraction) does: a zero reset
    drops the charge above threshold at every spike, so the same threshold fires less.  Bisection of the
    factor in [0.2, 1] (the spike count falls as the threshold rises); the amplitudes are kept, so
    rate x amplitude still approximates the teacher's activation.  Each network starts from its own membrane
    start.  Returns layer -> factor."""
    def spikes(model, names=None) -> dict[str, float]:
        ctx = model.context(T, images.shape[0], records={}, record_names=names)
        model.run(images, ctx)
        return {k: float(v.sum()) for k, v in ctx.records.items()}
    target = spikes(reference)
    factors = {}
    for layer in student.layers:
        neuron, name = student.neurons[layer.name], layer.name
        start = neuron.threshold.clone()

        def count(factor: float) -> float:
            neuron.set_scale(start * factor, amplitude=neuron.amplitude)  # the amplitude is kept
            return spikes(student, {name})[name]
        hi, c_hi = 1.0, count(1.0)
        if c_hi >= target[name]:
            factors[name] = 1.0
            continue
        lo, c_lo = 0.2, None  # the count falls as the factor rises: c(lo) > target >= c(hi)
        for _ in range(steps):
            mid = (lo + hi) / 2
            c = count(mid)
            if c > target[name]:
                lo, c_lo = mid, c
            else:
                hi, c_hi = mid, c
        c_lo = count(lo) if c_lo is None else c_lo
        factors[name] = lo if abs(c_lo - target[name]) < abs(c_hi - target[name]) else hi
        neuron.set_scale(start * factors[name], amplitude=neuron.amplitude)
    return factors


def _fit_and_select(rule, cfg, data, device, epochs: int, label: str, log) -> dict:
    """Train ``rule`` for ``epochs`` epochs (``train.fit``, in memory) on the training images less a held-out
    tenth, and keep the state that does best on that held-out part (the starting state unless an epoch
    beats it strictly: recovery never makes a student worse than it started on data it has not seen).
    The test set is only reported, never used to choose."""
    from ..data.feeding import hold_out
    from ..train import fit
    train_part, validation = hold_out(data, VALIDATION_FRACTION, cfg.seed, "the held-out fraction")
    start = _accuracy(rule, validation, cfg, device)
    best = {"epoch": 0, "validation": start, "state": copy.deepcopy(rule.state_dict())}
    history = []

    def on_epoch_end(row):
        acc = _accuracy(rule, validation, cfg, device)
        history.append({"epoch": int(row["epoch"]), "validation_accuracy": acc,
                        "test_accuracy": float(row["test_acc"]) if row.get("test_acc") is not None else -1.0})
        if acc > best["validation"]:
            best.update(epoch=int(row["epoch"]), validation=acc, state=copy.deepcopy(rule.state_dict()))
        return False
    if epochs > 0:
        fit(rule, cfg, train_part, device, log=log, label=label, on_epoch_end=on_epoch_end)
    rule.load_state_dict(best["state"])
    return {"epochs": int(epochs), "lr": float(cfg.lr), "batch_size": int(cfg.batch_size), "validation_images": _test_count(validation),
            "validation_accuracy_start": start, "history": history, "chosen_epoch": best["epoch"],
            "selection": f"the epoch (0 = unchanged) with the best accuracy on a held-out "
                         f"{int(100 * VALIDATION_FRACTION)}% of the training images, which it does not train on"}


def retarget_zero_reset(cfg, rule, info, data, device, *, epochs: int = 1, lr: float | None = None,
                        batch_size: int | None = None, log=_quiet_log) -> tuple[object, object, dict]:
    """A zero-reset copy of ``rule``'s student, recovered by ``epochs`` epochs of offline LTL against
    ``rule.teacher`` (at ``batch_size``, default the run's).  Returns (the new ltl-offline rule, its config,
    the report)."""
    from ..data.feeding import calibration_images
    from ..rules import get_rule
    student = rule.model
    if not isinstance(student, Student):
        raise SpiketandemError(f"--retarget needs a spiking student; this run's rule {cfg.rule!r} has none")
    if rule.teacher is None:
        raise SpiketandemError(f"--retarget recovers the accuracy by LTL against the run's teacher, but this "
                               f"{cfg.rule} run has no teacher.pt; train the student with a teacher (e.g. "
                               "--rule ltl-offline) or train it with --reset zero from the start")
    if epochs < 0:
        raise SpiketandemError(f"--calibrate-epochs must be >= 0, got {epochs}")
    resets = "/".join(sorted({n.config.reset for n in student.neurons.values()}))
    start = max(student.membrane_inits().values())
    ltl = get_rule("ltl-offline")
    # NIR's neurons start at v = 0: the retargeted student does too, whatever the run's recipe
    options = {**{k: v for k, v in cfg.options.items() if ltl.option_named(k) is not None}, "membrane_init": 0.0}
    zcfg = cfg.replace(rule="ltl-offline", reset="zero", options=options, epochs=max(epochs, 1),
                       lr=lr if lr is not None else RETARGET_LR, lr_schedule="constant", progress=False,
                       tensorboard=False, batch_size=batch_size or cfg.batch_size)
    before = _accuracy(rule, data, cfg, device)
    new = ltl(zcfg, info, rule.teacher, calibration_images(data, device))
    new.model.to(device)
    try:
        new.model.load_state_dict(student.state_dict())
    except RuntimeError as e:
        raise SpiketandemError(f"--retarget: the {cfg.rule} student's parameters do not fit an ltl-offline student "
                               f"of the same teacher ({str(e).splitlines()[0]}); retrain with --reset zero "
                               "instead") from None
    new.model.set_membrane_init(0.0)  # the loaded state carried the run's start
    targets = rule.extra_state().get("targets")
    if targets is not None:
        new.load_extra_state({"targets": targets})
    uncalibrated = _accuracy(new, data, zcfg, device)
    log(f"retarget zero-reset: test accuracy {100 * before:.2f}% with reset {resets}"
        + (f" from U[0] = {start:g} theta" if start else "") + f", {100 * uncalibrated:.2f}% with reset to zero from "
        "U[0] = 0, same thresholds")
    from ..data.feeding import hold_out
    validation = hold_out(data, VALIDATION_FRACTION, cfg.seed, "the held-out fraction")[1]
    plain_state, plain_val = copy.deepcopy(new.state_dict()), _accuracy(new, validation, zcfg, device)
    factors = balance_thresholds(new.model, student, calibration_images(data, device, BALANCE_IMAGES), cfg.T,
)
    balanced, balanced_val = _accuracy(new, data, zcfg, device), _accuracy(new, validation, zcfg, device)
    keep_balanced = balanced_val > plain_val  # the held-out tenth decides, as for the epochs below: a change
    if not keep_balanced:                     # must do strictly better there
        new.load_state_dict(plain_state)
    log(f"retarget zero-reset: {100 * balanced:.2f}% with thresholds re-balanced to the subtract-reset spike counts "
        f"(factors {min(factors.values()):.2f}..{max(factors.values()):.2f}; "
        f"{'kept' if keep_balanced else 'not kept'}); {epochs} epoch(s) of offline LTL against the teacher")
    selection = _fit_and_select(new, zcfg, data, device, epochs, "retarget zero-reset", log)
    after = _accuracy(new, data, zcfg, device)
    report = {"from_reset": resets, "to_reset": "zero", "from_membrane_init": start, "to_membrane_init": 0.0,
              "method": "offline LTL (rule ltl-offline through train.fit) against the run's teacher, starting from "
                        "the run's weights, thresholds and amplitudes",
              "T": int(cfg.T), "test_images": _test_count(data),
              "accuracy_subtract_reset": before, "accuracy_zero_reset_uncalibrated": uncalibrated,
              "accuracy_zero_reset_balanced": balanced, "threshold_factors": factors,
              "balanced_thresholds_kept": keep_balanced, "accuracy_after": after, **selection}
    return new, zcfg, report


def quantize_weights(cfg, rule, info, data, device, *, bits: int, mode: str = WEIGHT_QUANT_DEFAULT, epochs: int = 1,
                     lr: float | None = None, batch_size: int | None = None, log=_quiet_log) -> tuple[Student, dict]:
    """``rule``'s student with k-bit weights (every conv/linear weight quantized per layer by
    ``hardware.noise.quantize``), calibrated for ``epochs`` epochs by the hardware package's on-chip
    online LTL.  Returns (a plain student holding the k-bit weights, the report)."""
    import torch.nn.utils.parametrize as parametrize
    from ..data.feeding import calibration_images
    from ..hardware.calibrate import OnChip, calibration_rule
    from ..hardware.chip import Chip
    from ..hardware.noise import NoiseSpec
    if mode not in QUANT_MODES:
        raise SpiketandemError(f"--weight-quant {mode!r} is not one of {', '.join(QUANT_MODES)}")
    if epochs < 0:
        raise SpiketandemError(f"--calibrate-epochs must be >= 0, got {epochs}")
    spec = NoiseSpec("quantization", bits, mode)  # checks the bit width (2..16)
    chip = Chip([spec], seed=cfg.seed)
    online = calibration_rule("ltl", rule, chip, cfg, info, calibration_images(data, device))
    online.cfg = online.cfg.replace(epochs=max(epochs, 1), lr=lr if lr is not None else (cfg.lr or 1e-3),
                                    lr_schedule="constant", progress=False, tensorboard=False,
                                    batch_size=batch_size or online.cfg.batch_size)
    on_chip = OnChip(online, chip)
    float_acc = _accuracy(rule, data, cfg, device)
    before = _accuracy(on_chip, data, online.cfg, device)
    log(f"weights at {bits} bits ({mode}): test accuracy {100 * float_acc:.2f}% with float weights, "
        f"{100 * before:.2f}% quantized before calibration; {epochs} epoch(s) of on-chip online LTL")
    selection = _fit_and_select(on_chip, online.cfg, data, device, epochs, f"{bits}-bit calibration", log)
    after = _accuracy(on_chip, data, online.cfg, device)
    student = copy.deepcopy(online.model)
    for module in student.modules():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    for p in student.parameters():
        p.requires_grad_(False)
    report = {"bits": int(bits), "mode": mode, "quantizer": "spiketandem.hardware.noise.quantize, per layer",
              "method": "online LTL on a simulated chip with k-bit weights (hardware.calibrate.calibration_rule: "
                        "straight-through float shadows) through train.fit",
              "biases": "float (not quantized)", "test_images": _test_count(data),
              "accuracy_float_weights": float_acc, "accuracy_quantized_uncalibrated": float(before),
              "accuracy_after": float(after), **selection}
    return student, report
