"""Calibration for Speck: LTL against the run's teacher with the chip's discretization in the forward pass.

``DynapcnnNetwork(..., discretize=True)`` gives each chip layer one scale ``s`` (``speck.discretization_scale``:
the largest factor that keeps the folded weights and biases within 8 bits and the threshold and membrane floor
within 16 bits) and rounds: ``W_int = round(s W_fold)``, ``b_int = round(s b_fold)``, ``theta_int =
round(s theta)``.  The folded chip weights are the student's times a fixed per-element factor (spike amplitudes,
average pooling's ``1/k^2``, the input's event weight ``P``): ``W_fold = c . W``, ``b_fold = d . b + e``.  So the
student computes the chip's network when each of its weight layers is read through

    W_q = round(s c W) / (s c),      b_q = (round(s (d b + e)) / s - e) / d,

with ``s`` recomputed at every forward from the current weights and biases exactly as sinabs will compute it
(:class:`ChipGrid`), and gradients passed straight through to float shadow weights (``W_q = W + sg(W_q - W)``).
The hardware package's online LTL (``hardware.calibrate.calibration_rule`` on an ideal ``hardware.Chip``) trains
those shadows against the run's teacher through ``train.fit``; the epoch kept is the best on a held-out tenth of
the training images (``retarget._fit_and_select``).  Afterwards the weights are the quantized ones and each
threshold is set to ``round(s theta) / s``: the mapping then discretizes the student to exactly the integers the
forward pass used (tested in ``tests/test_export_speck.py``).

Not in the loop: the thresholds and starting membranes during training (16-bit: their rounding moves a
layer's threshold by at most half of one part in ``theta_int``, a few hundred to several thousand on the
digits students), and the readout's threshold, which the export chooses again after calibration (its 16-bit
term enters ``s`` only when ``theta_readout s_8 > 32767``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn

from ..errors import SpiketandemError
from ..student import Student
from .speck import ChipLayer, chip_layers, discretization_scale

from .options import SPECK_WEIGHT_BITS  # noqa: E402


@dataclass
class GridLayer:
    """One chip layer's link to the student: the module whose weight and bias it folds, and the factors."""

    where: str
    module: nn.Module
    weight_factor: torch.Tensor   # c: W_fold = c . W (the ON half for a rate-encoded first layer)
    bias_factor: torch.Tensor     # d: b_fold = d . b + e
    bias_shift: torch.Tensor      # e
    on_off: bool                  # the chip's weights are [c . W, -c . W] (ON/OFF input channels)
    threshold: float


def _weight_module(student: Student, where: str) -> nn.Module:
    """The one conv/linear module that feeds ``where`` (a neuron layer's name, or ``"readout"``)."""
    targets = student.readout if where == "readout" else next(i.modules for i in student.layers if i.name == where)
    found = [m for m in (student.graph_module.get_submodule(t) for t in targets)
             if isinstance(m, (nn.Conv2d, nn.Linear))]
    if len(found) != 1 or found[0].bias is None:
        raise SpiketandemError(f"--target speck --weight-bits {SPECK_WEIGHT_BITS}: layer {where!r} is fed by "
                               f"{len(found)} conv/linear modules (one with a bias is needed to calibrate it on the "
                               "chip's grid); export it without --weight-bits")
    return found[0]


def _on_half(layer: ChipLayer, weight: torch.Tensor) -> torch.Tensor:
    """The ON half of a rate-encoded first layer's chip weights ``[P W, -P W]``, in the student's weight shape."""
    c = layer.in_shape[0] // 2
    if layer.kind == "conv":
        return layer.weight[:, :c]
    return layer.weight.reshape(layer.weight.shape[0], 2 * c, -1)[:, :c].reshape(weight.shape)


@torch.no_grad()
def chip_grid(student: Student, peak: float | None, readout_threshold: float) -> list[GridLayer]:
    """Per chip layer (``speck.chip_layers`` order): its student module and the fixed factors of the folding,
    measured by mapping a copy whose weights and biases are ones (``c``, ``d + e``) and whose biases are zeros
    (``e``); then checked on the student's own weights (``W_fold = c . W``), refusing a mapping that is not
    per-element."""
    probe = copy.deepcopy(student).cpu()
    layers = chip_layers(student, peak, readout_threshold)
    mods = [_weight_module(probe, layer.where) for layer in layers]
    for m in mods:
        m.weight.fill_(1.0)
        m.bias.fill_(1.0)
    ones = chip_layers(probe, peak, readout_threshold)
    for m in mods:
        m.bias.zero_()
    zeros = chip_layers(probe, peak, readout_threshold)
    rate = student.encoding == "rate"
    out = []
    for i, (layer, one, zero) in enumerate(zip(layers, ones, zeros)):
        module = _weight_module(student, layer.where)
        w = module.weight.detach().cpu().double()
        on_off = rate and i == 0
        c = _on_half(one, w) if on_off else one.weight
        folded = _on_half(layer, w) if on_off else layer.weight
        if c.shape != w.shape or not torch.allclose(folded, c * w, rtol=1e-6, atol=1e-12):
            raise SpiketandemError(f"--target speck --weight-bits {SPECK_WEIGHT_BITS}: the chip's weights of layer "
                                   f"{layer.where!r} are not the student's times a fixed factor, so the chip's grid "
                                   "cannot be put in its forward pass; export it without --weight-bits")
        out.append(GridLayer(layer.where, module, c.clone(), (one.bias - zero.bias).clone(), zero.bias.clone(),
                             on_off, float(layer.threshold)))
    return out


def _originals(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A layer's float weight and bias (the shadows when the chip's grid is registered on them)."""
    found = []
    for name in ("weight", "bias"):
        if parametrize.is_parametrized(module, name):
            found.append(getattr(module.parametrizations, name).original)
        else:
            found.append(getattr(module, name))
    return found[0], found[1]


def layer_scale(grid: GridLayer) -> float:
    """``s`` of one chip layer from the module's current (float) weight and bias:
    ``speck.discretization_scale`` of the folded tensors, the scale sinabs will use."""
    with torch.no_grad():
        w, b = _originals(grid.module)
        folded = grid.weight_factor.to(w.device) * w.double()
        if grid.on_off:
            folded = torch.cat([folded, -folded], dim=1)
        bias = grid.bias_factor.to(b.device) * b.double() + grid.bias_shift.to(b.device)
        return discretization_scale(ChipLayer(grid.where, "conv", folded.cpu(), bias.cpu(), (), grid.threshold,
                                              "subtract", 0.0))


def chip_integers(grid: GridLayer) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The integers the chip will hold for this layer's current weights: ``(round(s c W), round(s b_fold),
    s)`` (ON half only for the first layer of a rate-encoded student)."""
    s = layer_scale(grid)
    with torch.no_grad():
        w, b = _originals(grid.module)
        wi = torch.round(grid.weight_factor * w.detach().cpu().double() * s)
        bi = torch.round((grid.bias_factor * b.detach().cpu().double() + grid.bias_shift) * s)
    return wi, bi, s


class _OnGrid(nn.Module):
    """Parametrization of one weight (or bias) read through the chip's grid: ``round(s (f t + e)) / s`` mapped
    back to the student's units, the straight-through estimator passing the gradient to ``t`` unchanged."""

    def __init__(self, grid: GridLayer, which: str):
        super().__init__()
        self.grid, self.which = grid, which

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        s = layer_scale(self.grid)
        if self.which == "weight":
            f = self.grid.weight_factor.to(t.device, torch.float64)
            e = torch.zeros((), dtype=torch.float64, device=t.device)
        else:
            f = self.grid.bias_factor.to(t.device, torch.float64)
            e = self.grid.bias_shift.to(t.device, torch.float64)
        q = (torch.round((f * t.double() + e) * s) / s - e) / torch.where(f == 0, torch.ones_like(f), f)
        q = torch.where(f == 0, t.double(), q).to(t.dtype)
        return t + (q - t).detach()


def put_on_grid(student: Student, grid: list[GridLayer]) -> Student:
    """Register the chip's grid on every mapped weight and bias of ``student`` (in place; ``grid`` must come
    from :func:`chip_grid` of this very student object)."""
    for layer in grid:
        for which in ("weight", "bias"):
            parametrize.register_parametrization(layer.module, which, _OnGrid(layer, which))
    return student


@torch.no_grad()
def take_off_grid(student: Student, grid: list[GridLayer]) -> Student:
    """Make the grid permanent: weights and biases keep their quantized values, and each hidden layer's threshold
    becomes ``round(s theta) / s`` (its spike amplitude, folded into the next layer, is kept)."""
    scales = [layer_scale(layer) for layer in grid]
    for layer in grid:
        for which in ("weight", "bias"):
            if parametrize.is_parametrized(layer.module, which):
                parametrize.remove_parametrizations(layer.module, which, leave_parametrized=True)
    neurons = student.neurons
    for layer, s in zip(grid, scales):
        if layer.where in neurons:
            m = neurons[layer.where]
            m.set_scale(round(float(m.threshold) * s) / s, amplitude=m.amplitude.clone())
    return student


def calibrate_on_speck(cfg, rule, info, data, device, *, peak: float | None, readout_threshold: float,
                       epochs: int, lr: float | None = None, batch_size: int | None = None, log=None) -> tuple:
    """``rule``'s student (left untouched) calibrated by online LTL against ``rule.teacher`` on the chip's grid
    for ``epochs`` epochs on ``data``'s training images (less the held-out tenth that chooses the epoch).
    Returns (the calibrated student, on the CPU, eval mode, its weights on the grid; the report)."""
    from ..data.feeding import calibration_images
    from ..hardware.calibrate import OnChip, calibration_rule
    from ..hardware.chip import Chip
    from .retarget import _fit_and_select
    log = log or (lambda *a, **k: None)
    chip = Chip([], seed=cfg.seed)          # ideal: the grid below is the only non-ideality
    online = calibration_rule("ltl", rule, chip, cfg, info, calibration_images(data, device))
    online.cfg = online.cfg.replace(epochs=max(epochs, 1), lr=lr if lr is not None else (cfg.lr or 1e-3),
                                    lr_schedule="constant", progress=False, tensorboard=False,
                                    batch_size=batch_size or online.cfg.batch_size)
    grid = chip_grid(online.model, peak, readout_threshold)
    put_on_grid(online.model, grid)
    log(f"calibration on Speck's grid: {epochs} epoch(s) of online LTL against the teacher "
        f"(lr {online.cfg.lr:g}, batch {online.cfg.batch_size})")
    selection = _fit_and_select(OnChip(online, chip), online.cfg, data, device, epochs, "speck calibration", log)
    student = take_off_grid(online.model, grid)
    for p in student.parameters():
        p.requires_grad_(False)
    report = {"method": "online LTL against the run's teacher (hardware.calibrate.calibration_rule) through "
                        "train.fit, every mapped weight and bias read through the chip's 8-bit grid with the "
                        "per-layer scale sinabs' discretization uses (straight-through float shadows)",
              "weight_bits": SPECK_WEIGHT_BITS, "in_the_loop": "weights and biases (8 bit, per-layer scale "
              "recomputed every forward); thresholds set to the 16-bit grid after training",
              "readout_threshold_in_the_loop": float(readout_threshold), **selection}
    return student.cpu().eval(), report
