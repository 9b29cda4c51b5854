"""DECOLLE, deep continuous local learning (Kaiser, Mostafa & Neftci 2020).

Every spiking layer l has a FIXED random readout G_l (never trained) and a local loss at every step,
    L_l[t] = MSE(G_l S_l[t], onehot(y))        (or cross-entropy with ``--decolle-loss ce``),
its input arrives detached (no gradient between layers), and the gradient ignores the reset:
    dL_l[t]/dW_l = dL/dS_l[t] * s'(U_l[t]) * P_l[t],   P_l[t] = sum_{k<=t} a^(t-k) x_l[k],
with x_l the layer's input and P_l its eligibility trace (the leak-filtered input).  The student's own
readout (the layers after the last spiking layer) learns from the cross-entropy of its output at every
step, on detached spikes.  Layers are trained from a random initialisation (no teacher).

Two forms with the same gradient (``--decolle-mode``):
- ``online`` (default, the paper's): the student runs one step at a time carrying its state; the
  traces are kept per layer, so memory does not grow with T.  Each step runs the student twice:
  once for the dynamics, once on the traces (each layer's current c_t * f(P/c_t) = sum_k a^(t-k) I[k]
  for affine f, c_t = sum_k a^k) to get the eligibility term.  Weights are updated after every step
  (``--decolle-updates step``, the paper) or once per window (``window``).  Needs the analog input
  encoding, reset by subtraction, one leak for all layers, and affine layers between spiking layers
  (avg pooling, not max pooling).
- ``offline``: one pass over T steps with BPTT inside each layer, reset detached (memory O(T)).
The first ``--decolle-burnin`` steps of each window only drive the dynamics (no loss).
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SpiketandemError
from ..surrogate import spike
from ..data.feeding import calibration_images
from .base import Rule
from .catalog import CATALOG
from .direct import build_direct_student, initialise_rates, record_shapes


class FixedReadout(nn.Module):
    """z = G s for flattened spikes s; G ~ U(-1/sqrt(n), 1/sqrt(n)), a buffer (never trained)."""

    def __init__(self, n_in: int, n_out: int, generator: torch.Generator):
        super().__init__()
        bound = 1 / math.sqrt(n_in)
        self.register_buffer("weight", (torch.rand(n_out, n_in, generator=generator) * 2 - 1) * bound)

    def forward(self, spikes: torch.Tensor, sample_dims: int) -> torch.Tensor:
        return spikes.flatten(-sample_dims) @ self.weight.T


class Decolle(Rule):
    name = "decolle"
    needs_teacher = False
    default_optimizer = "adam"
    default_lr = 1e-3
    options = CATALOG[name].options  # declared in catalog.py (torch-free)

    def __init__(self, cfg, info, teacher=None, calibration=None):
        super().__init__(cfg, info, None)
        device = calibration.device if calibration is not None else torch.device("cpu")
        self.mode = self.option("decolle_mode")
        self.burnin = int(self.option("decolle_burnin"))
        if not 0 <= self.burnin < cfg.T:
            raise SpiketandemError(f"--decolle-burnin must lie in [0, T) = [0, {cfg.T}), got {self.burnin}")
        self.model = build_direct_student(cfg, info, device)
        for neuron in self.model.neurons.values():  # DECOLLE's gradient ignores the reset
            neuron.config = dataclasses.replace(neuron.config, detach_reset=True)
        if self.mode == "online":
            self._check_online(cfg)
        self.shapes = record_shapes(self.model, info, device)
        g = torch.Generator().manual_seed(cfg.seed + 7919)
        self.readouts = nn.ModuleDict({n: FixedReadout(math.prod(s), info.num_classes, g)
                                       for n, s in self.shapes.items()}).to(device)

    def modules(self):
        return {"model": self.model, "readouts": self.readouts}

    def setup(self, data, device):
        """Rescale the random weights so that every layer fires at ``--init-rate`` on the first training images."""
        if self.option("init_rate"):
            initialise_rates(self.model, calibration_images(data, device), self.cfg.T, self.option("init_rate"))
        return data

    def _check_online(self, cfg) -> None:
        problems = []
        if cfg.encoding != "analog":
            problems.append("the analog input encoding (--encoding analog)")
        if cfg.reset != "subtract":
            problems.append("reset by subtraction (--reset subtract)")
        if any(isinstance(m, nn.MaxPool2d) for m in self.model.modules()):
            problems.append("affine layers between spiking layers (avg pooling, not max pooling)")
        if problems:
            raise SpiketandemError(f"online DECOLLE needs {' and '.join(problems)}; fix that or use "
                                   "--decolle-mode offline")

    # ---- losses ------------------------------------------------------------------------------------

    def local_loss(self, name: str, spikes: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean over steps of the loss of G_l S_l[t] against the label; spikes [S, B, ...]."""
        z = self.readouts[name](spikes, len(self.shapes[name]))
        return self._label_loss(z, y)

    def _label_loss(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.option("decolle_loss") == "ce":
            return F.cross_entropy(z.flatten(0, 1), y.repeat(z.shape[0]))
        return F.mse_loss(z, F.one_hot(y, z.shape[-1]).to(z.dtype).expand_as(z))

    def loss(self, x, y, epoch):
        """The offline form: one pass, layer-local BPTT, losses averaged over steps t >= burn-in."""
        ctx = self.context(x.shape[0], detach=True, records={})
        out = self.model.run(x, ctx)
        steps = slice(self.burnin, None)
        local = sum(self.local_loss(n, ctx.records[n][steps], y) for n in self.shapes)
        ce = F.cross_entropy(out[steps].flatten(0, 1), y.repeat(out[steps].shape[0]))
        return ce + local, out.mean(0), {"ce": float(ce.detach()), "local": float(local.detach())}

    # ---- online form ---------------------------------------------------------------------------

    def online_losses(self, x: torch.Tensor, y: torch.Tensor):
        """Yields (loss at step t or None during burn-in, output logits at step t), one step at a time.
        Only one step's graph exists at once, so memory does not grow with T."""
        names = list(self.shapes)
        leak = {float(n.alpha) for n in self.model.neurons.values()}
        if len(leak) != 1:
            raise SpiketandemError("online DECOLLE needs one leak for all layers; use --decolle-mode offline")
        a = leak.pop()
        states, traces, c = None, {}, 0.0
        for t in range(self.cfg.T):
            ctx = self.context(x.shape[0], 1, detach=True, records={}, state_in=states)
            logits = self.model.run(x, ctx)[0]  # graph only into the readout (outputs are detached)
            states = {n: s.detach() for n, s in ctx.state_out.items()}
            c = a * c + 1
            for n in names:
                traces[n] = a * traces.get(n, 0) + ctx.records[n][0].detach()
            if t < self.burnin:
                yield None, logits
                continue
            currents = self._trace_currents(x, traces, c)
            local = 0
            for n in names:
                neuron = self.model.neurons[n]
                # value U[t] (so the spike is the real one), gradient through the eligibility current
                u = states[n].u + (currents[n] - currents[n].detach())
                s = spike(u, neuron.threshold, neuron.config.surrogate)
                local = local + self.local_loss(n, s.unsqueeze(0), y)
            yield local + F.cross_entropy(logits, y), logits

    def _trace_currents(self, x, traces: dict, c: float) -> dict:
        """Each layer's eligibility current sum_k a^(t-k) I_l[k] = c * f_l(P_{l-1} / c), with the
        gradient into that layer's own parameters only (its input, a trace, carries none)."""
        captured = {}

        def capture(name):
            def hook(current, t):
                captured[name] = current * c
                return current
            return hook

        ctx = self.context(x.shape[0], 1, detach=True,
                         output_hooks={n: (lambda s, n=n: (traces[n] / c).unsqueeze(0)) for n in traces},
                         current_hooks={n: capture(n) for n in traces})
        self.model.run(x, ctx)  # the analog image is its own normalised trace (P_in / c = x)
        return captured

    def online_gradients(self, x, y) -> tuple[float, torch.Tensor]:
        """Accumulate the window's gradient (mean over learning steps) without updating; for tests and
        ``--decolle-updates window``.  Returns (mean loss, summed logits)."""
        n_learn = self.cfg.T - self.burnin
        total, logit_sum = 0.0, 0
        for loss_t, logits in self.online_losses(x, y):
            logit_sum = logit_sum + logits.detach()
            if loss_t is not None:
                (loss_t / n_learn).backward()
                total += float(loss_t.detach())
        return total / n_learn, logit_sum

    def train_step(self, x, y, optimizer, epoch):
        if self.mode == "offline":
            return super().train_step(x, y, optimizer, epoch)
        if self.option("decolle_updates") == "window":
            optimizer.zero_grad(set_to_none=True)
            loss, logit_sum = self.online_gradients(x, y)
            optimizer.step()
        else:
            total, n, logit_sum = 0.0, 0, 0
            for loss_t, logits in self.online_losses(x, y):
                logit_sum = logit_sum + logits.detach()
                if loss_t is None:
                    continue
                optimizer.zero_grad(set_to_none=True)
                loss_t.backward()
                optimizer.step()
                total, n = total + float(loss_t.detach()), n + 1
            loss = total / n
        return {"loss": loss, "correct": int((logit_sum.argmax(1) == y).sum())}
