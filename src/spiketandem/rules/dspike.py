"""Dspike (Li et al., NeurIPS 2021): a surrogate family with an adaptive temperature b.

Surrogate (in ``surrogate.py``, on the normalised membrane z = (U - V_th) / V_th):
    dS/dz = b / (2 tanh(b/2)) * sech^2(b z)  for |z| <= 1/2, else 0
(b -> 0: straight-through on the window; b -> inf: the step function).  At the start of every epoch
the temperature is chosen among {b - db, b, b + db}: the one whose surrogate gradient of the loss
with respect to the first layer's weights has the highest cosine similarity with the finite-difference
gradient  (L(w + eps e_i) - L(w - eps e_i)) / (2 eps)  of the true (spiking) loss on one batch.
``--no-dspike-select`` keeps b fixed.  The loss and training are STBP's otherwise.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from ..errors import SpiketandemError
from ..surrogate import Surrogate
from .catalog import CATALOG
from .direct import DirectRule


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """a.b / (|a| |b|); 0 when either vector is zero (no information)."""
    na, nb = a.norm(), b.norm()
    return float(a.flatten() @ b.flatten() / (na * nb)) if na > 0 and nb > 0 else 0.0


def finite_difference_gradient(loss_fn: Callable[[], float], weight: torch.Tensor, coords: torch.Tensor,
                               eps: float) -> torch.Tensor:
    """Central differences (L(w + eps e_i) - L(w - eps e_i)) / (2 eps) at the flat indices ``coords``."""
    flat = weight.data.view(-1)
    grad = torch.zeros(len(coords), dtype=torch.float64)
    for j, i in enumerate(coords.tolist()):
        keep = float(flat[i])
        flat[i] = keep + eps
        plus = loss_fn()
        flat[i] = keep - eps
        minus = loss_fn()
        flat[i] = keep
        grad[j] = (plus - minus) / (2 * eps)
    return grad


def select_temperature(candidates, fd_grad: torch.Tensor, surrogate_grad: Callable[[float], torch.Tensor]):
    """The candidate b whose surrogate gradient best matches ``fd_grad`` (cosine), and all the cosines.
    Ties go to the earlier candidate (the current b comes first)."""
    scores = {b: cosine(surrogate_grad(b).double(), fd_grad) for b in candidates}
    return max(scores, key=scores.get), scores


class Dspike(DirectRule):
    name = "dspike"
    paper_tdbn = True
    options = CATALOG[name].options  # declared in catalog.py (torch-free)

    def __init__(self, cfg, info, teacher=None, calibration=None):
        super().__init__(cfg, info, teacher, calibration)
        self.b = float(self.option("dspike_b"))
        self.selected_epoch = -1
        self.last_scores: dict = {}
        self.set_temperature(self.b)

    def set_temperature(self, b: float) -> None:
        """Give every neuron layer the Dspike surrogate of temperature b."""
        self.b = float(b)
        for neuron in self.model.neurons.values():
            neuron.config = dataclasses.replace(neuron.config, surrogate=Surrogate("dspike", self.b))

    def first_weight(self) -> torch.Tensor:
        first = self.model.layers[0].name
        weights = [p for p in self.model.layer_parameters(first) if p.dim() > 1]
        if not weights:
            raise SpiketandemError("dspike's temperature search needs a conv/linear weight before the first spiking layer")
        return weights[0]

    def candidates(self) -> list[float]:
        db = self.option("dspike_db")
        return [b for b in (self.b, self.b + db, self.b - db) if b > 0]

    def choose_temperature(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        """One selection step on (x, y); sets the chosen b and returns {b: cosine}."""
        weight = self.first_weight()
        seed = int(torch.randint(0, 2 ** 31 - 1, ()).item())
        buffers = {name: b.clone() for name, b in self.model.named_buffers()}  # BN statistics move in train mode

        def spiking_loss(grad: bool = False):
            # same Bernoulli draws (rate encoding) in every evaluation; BN statistics restored afterwards
            with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
                torch.manual_seed(seed)
                out, _ = self.run(x, self.cfg.T)
            return self.main_loss(self.scores(out), y)

        n = weight.numel()
        k = self.option("dspike_fd_coords")
        g = torch.Generator().manual_seed(seed)
        coords = torch.randperm(n, generator=g)[:k] if 0 < k < n else torch.arange(n)
        with torch.no_grad():
            fd = finite_difference_gradient(lambda: float(spiking_loss()), weight, coords, self.option("dspike_fd_eps"))

        def surrogate_grad(b):
            self.set_temperature(b)
            (grad,) = torch.autograd.grad(spiking_loss(), weight)
            return grad.reshape(-1)[coords.to(grad.device)].cpu()

        best, scores = select_temperature(self.candidates(), fd, surrogate_grad)
        self.set_temperature(best)
        with torch.no_grad():
            for name, b in self.model.named_buffers():
                b.copy_(buffers[name])
        return scores

    def train_step(self, x, y, optimizer, epoch):
        if self.option("dspike_select") and epoch != self.selected_epoch:
            self.selected_epoch = epoch
            n = self.option("dspike_fd_batch")
            self.last_scores = self.choose_temperature(x[:n], y[:n])
        logs = super().train_step(x, y, optimizer, epoch)
        return {**logs, "dspike_b": self.b}

    def on_distributed(self, comm) -> None:
        """Each rank would pick b from its own slice of the batch: every rank takes rank 0's pick (rank 0's
        slice starts the global batch, so with --dspike-fd-batch <= the per-rank batch it is the single
        process's pick)."""
        choose = self.choose_temperature

        def choose_as_rank0(x, y):
            scores = choose(x, y)
            self.set_temperature(comm.broadcast_float(self.b))
            return scores
        self.choose_temperature = choose_as_rank0

    def extra_state(self):
        return {"dspike_b": self.b, "selected_epoch": self.selected_epoch}

    def load_extra_state(self, state):
        if "dspike_b" in state:
            self.set_temperature(state["dspike_b"])
            self.selected_epoch = state.get("selected_epoch", -1)
