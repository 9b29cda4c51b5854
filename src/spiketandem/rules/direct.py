"""Direct (end-to-end) training of the spiking student, the base of stbp, tet, dspike and shortcut.

The student is the spiking version of an *untrained* ``cfg.arch`` (random init, as these papers train
from scratch; a ``--teacher`` is not used), trained by back-propagation through time and through all
layers with the neuron's surrogate gradient.  Shared options:

- ``--tdbn``: keep the BatchNorm layers, normalising over (T, B, H, W) and scaled by V_th (tdBN);
- ``--neunorm``: NeuNorm after the convolutional spiking layers (inserted into the student's graph);
- ``--voting M``: a voting output layer: M spiking output neurons per class, the class score is the
  mean firing rate of its M neurons, and the loss becomes the mean squared error between those
  scores and the one-hot label (STBP's output layer and loss);
- ``--init-rate r``: without BatchNorm, each layer's random weights are rescaled at the start so that
  it fires at mean rate r on calibration images (our addition: with PyTorch's default initialisation
  deep layers stay silent at V_th = 1 and nothing learns; 0 turns it off).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SpiketandemError
from ..models import build_model
from ..neuron import RunContext, run_neuron
from ..student import Student, build_student
from ..data.feeding import calibration_images
from .base import Rule
from .catalog import DIRECT_OPTIONS
from .neunorm import install_neunorm
from .tdbn import install_tdbn


@torch.no_grad()
def bisect_scale(modules: list[nn.Module], rate_of, target: float, iterations: int = 10) -> float:
    """Multiply the parameters of ``modules`` by the factor s in [2^-6, 2^8] (bisection on log2 s) at which
    ``rate_of()`` (a mean firing rate, increasing with s) equals ``target``; returns s."""
    originals = [[p.clone() for p in m.parameters()] for m in modules]

    def rate_at(log_scale: float) -> float:
        for m, orig in zip(modules, originals):
            for p, o in zip(m.parameters(), orig):
                p.copy_(o * 2 ** log_scale)
        return rate_of()

    lo, hi = -6.0, 8.0
    for _ in range(iterations):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if rate_at(mid) < target else (lo, mid)
    rate_at((lo + hi) / 2)
    return 2 ** ((lo + hi) / 2)


@torch.no_grad()
def rate_init(student: Student, images: torch.Tensor, T: int, target: float) -> dict[str, float]:
    """Rescale each layer's random weights, in order (later layers see the rescaled earlier ones), so that
    its mean firing rate on ``images`` is ``target``; returns the factor per layer.  Why: with PyTorch's
    default initialisation and V_th = 1, deep layers without BatchNorm get too little current to fire, so
    no surrogate gradient flows and direct training never starts."""
    mode = student.training
    student.eval()
    factors = {}
    for info in student.layers:
        def rate_of(name=info.name):
            ctx = student.context(T, images.shape[0], records={}, record_names={name})
            student.run(images, ctx)
            return float(ctx.records[name].mean())
        layers = [m for m in (student.graph_module.get_submodule(t) for t in info.modules)
                  if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
        factors[info.name] = bisect_scale(layers, rate_of, target)
    student.train(mode)
    return factors


def build_direct_student(cfg, info, device, keep_batchnorm: bool = False) -> Student:
    """The spiking student of an untrained, randomly initialised ``cfg.arch``, with the papers' neuron:
    every layer fires binary spikes (amplitude 1) at the fixed threshold V_th = ``cfg.threshold``."""
    arch = build_model(cfg.arch, info.num_classes, info.in_channels, info.image_size, cfg.width, cfg.act_clip,
                       cfg.act_levels).to(device)
    student = build_student(arch, cfg.neuron_config(), info.example_input(device=device), init="random",
                            encoding=cfg.encoding, keep_batchnorm=keep_batchnorm)
    for neuron in student.neurons.values():  # not threshold balancing: V_th is part of these rules
        neuron.set_scale(cfg.threshold, amplitude=1.0)
    return student


def initialise_rates(student: Student, calibration, T: int, target: float) -> dict[str, float]:
    """``rate_init`` on up to 64 calibration images, unless disabled (target 0)."""
    if not target:
        return {}
    return rate_init(student, calibration[:64], T, target)


@torch.no_grad()
def record_shapes(student: Student, info, device) -> dict[str, tuple]:
    """Per-sample shape of every neuron layer's output (one dry step in eval mode, no statistics touched)."""
    mode = student.training
    student.eval()
    ctx = student.context(1, 1, records={})
    x = info.example_input(batch=1, device=device)
    student.run(x.unsqueeze(1) if student.encoding == "frames" else x, ctx)  # frames: [1, T=1, C, H, W]
    student.train(mode)
    return {name: tuple(s.shape[2:]) for name, s in ctx.records.items()}


def _final_linear(student: Student) -> str:
    """Module target of the last Linear of the readout (the layer that emits the logits)."""
    gm = student.graph_module
    linears = [n.target for n in gm.graph.nodes if n.op == "call_module" and n.target in student.readout
               and isinstance(gm.get_submodule(n.target), nn.Linear)]
    if not linears:
        raise SpiketandemError("--voting needs an architecture whose output layer is a Linear after the last spiking "
                               "layer; this one has none")
    return linears[-1]


class DirectRule(Rule):
    """STBP: cross-entropy on the mean output over time, BPTT through every layer (Wu et al. 2018/2019)."""

    name = "direct"
    needs_teacher = False
    default_optimizer = "adam"
    default_lr = 1e-3
    options = DIRECT_OPTIONS
    paper_tdbn = False

    def __init__(self, cfg, info, teacher=None, calibration=None):
        super().__init__(cfg, info, teacher if self.needs_teacher else None)
        device = calibration.device if calibration is not None else torch.device("cpu")
        self.tdbn, self.voting, self.neunorm, self.init_factors = False, 0, {}, {}
        self.neuron = cfg.neuron_config()
        self.model = self.build_student(teacher, calibration, device)

    def build_student(self, teacher, calibration, device) -> Student:
        """The trained network: a random student at V_th (the teacher is not used), with the papers' options
        ``--tdbn``, ``--neunorm`` and ``--voting`` installed."""
        cfg, info = self.cfg, self.info
        tdbn = self.option("tdbn")
        self.tdbn = self.paper_tdbn if tdbn is None else bool(tdbn)
        self.voting = int(self.option("voting"))
        model = build_direct_student(cfg, info, device, keep_batchnorm=self.tdbn)
        if self.tdbn:
            install_tdbn(model, cfg.threshold, self.option("tdbn_alpha"))
        if self.option("neunorm"):
            self.neunorm = install_neunorm(model, record_shapes(model, info, device),
                                           self.option("neunorm_k"), self.option("neunorm_v"))
            model.to(device)
        if self.voting:
            target = _final_linear(model)
            old = model.graph_module.get_submodule(target)
            self.voting_layer = nn.Linear(old.in_features, info.num_classes * self.voting).to(device)
            model.graph_module.add_submodule(target, self.voting_layer)
        return model

    def setup(self, data, device):
        """Without tdBN: rescale the random weights so that every layer (and the voting layer) fires at
        ``--init-rate`` on the first training images."""
        if self.tdbn or not self.option("init_rate"):
            return data
        images = calibration_images(data, device)
        self.init_factors = initialise_rates(self.model, images, self.cfg.T, self.option("init_rate"))
        if self.voting:  # the output neurons fire too, so they get the same start
            self.init_factors["voting"] = bisect_scale(
                [self.voting_layer], lambda: float(self.scores(self.run(images[:64], self.cfg.T)[0]).mean()),
                self.option("init_rate"))
        return data

    # ---- running the student ---------------------------------------------------------------------

    def run(self, x: torch.Tensor, T: int, **settings) -> tuple[torch.Tensor, RunContext]:
        """The student's output [T, B, K] and its run context (``settings``: records, hooks, ...)."""
        ctx = self.context(x.shape[0], T, **settings)
        return self.model.run(x, ctx), ctx

    def scores(self, out: torch.Tensor) -> torch.Tensor:
        """Class scores [B, classes] from the output [T, B, K]: the mean over time, or with voting the
        mean firing rate of each class's M output neurons."""
        if not self.voting:
            return out.mean(0)
        c = self.neuron
        spikes, _ = run_neuron(out, out.shape[0], c.alpha, c.threshold, c.reset, c.surrogate, kind=c.kind)
        return spikes.mean(0).reshape(out.shape[1], self.info.num_classes, self.voting).mean(2)

    def main_loss(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.voting:
            return F.mse_loss(scores, F.one_hot(y, self.info.num_classes).to(scores.dtype))
        return F.cross_entropy(scores, y)

    @torch.no_grad()
    def predict(self, x, T=None):
        return self.scores(self.run(x, T or self.cfg.T)[0])

    # ---- the objective -------------------------------------------------------------------------

    def objective(self, out, ctx, y, epoch) -> tuple[torch.Tensor, torch.Tensor, dict]:
        scores = self.scores(out)
        return self.main_loss(scores, y), scores, {}

    def loss(self, x, y, epoch):
        out, ctx = self.run(x, self.cfg.T, **self.run_settings())
        return self.objective(out, ctx, y, epoch)

    def run_settings(self) -> dict:
        """Extra RunContext settings for training (e.g. which layers to record)."""
        return {}
