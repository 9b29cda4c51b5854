"""Progressive tandem learning (Wu et al., IEEE TPAMI 2021).

Start from the teacher (BN folded) and turn its layers into spiking tandem layers one at a time.
In stage k, layers 1..k-1 are spiking and frozen, layer k is spiking and trained by tandem learning
(spikes forward, the ANN gradient backward; see ``tandem.py``), and layers k+1..L are still ANN layers
(ReLU of their mean input current, trained normally) that learn to absorb the conversion error.  On
entering stage k, layer k's threshold and spike amplitude are set to the ``--percentile`` (99.9) of
its ANN activation in the current network, the rate-unit form of the paper's "percentile / T".

Adaptive scheduler: after every epoch the current network is scored on a validation split held out
from the TRAINING set (``--ptl-val-fraction``; the test set is never used); after ``--ptl-patience``
epochs without a gain (6 in the paper) the best weights of the stage are restored, layer k is frozen
and layer k+1 is converted.  To fit a fixed budget, ``--epochs`` caps the total: a stage also ends
after its share (remaining epochs / remaining stages; unused epochs pass to later stages), so at
least one epoch per neuron layer is needed.  After the last stage (all layers spiking, readout
trained) the network stays at its best state and later epochs make no updates.

The validation split is held out in ``setup`` (the loop then trains on the rest) and the stage logic
runs in ``on_epoch_end``.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ..data.feeding import calibration_images, evaluation_batches, hold_out
from ..errors import SpiketandemError
from .base import Rule, make_student
from .catalog import CATALOG
from .hybrid import hybrid_activation_scales, require_if_neurons, run_hybrid


class PTL(Rule):
    name = "ptl"
    needs_teacher = True
    spiking = True
    default_optimizer = "adam"  # the tandem-learning recipe (the TPAMI paper's own value is unverified)
    default_lr = 1e-3
    options = CATALOG[name].options  # declared in catalog.py (torch-free)

    def __init__(self, cfg, info, teacher=None, calibration=None):
        super().__init__(cfg, info, teacher)
        self.require_teacher(teacher, "starts from a trained teacher")
        require_if_neurons(cfg, self.name)
        self.model = make_student(cfg, info, teacher, calibration)
        self.names = [layer.name for layer in self.model.layers]
        if cfg.epochs < len(self.names):
            raise SpiketandemError(f"rule ptl converts one of the {len(self.names)} neuron layers per stage and needs "
                                   f"at least one epoch each: pass --epochs >= {len(self.names)}")
        self.calibration: torch.Tensor | None = None
        self.val_batches = None
        # scheduler state (saved in checkpoints): stage = index of the layer being trained
        self.stage, self.done = -1, False
        self.epochs_used, self.stage_epochs, self.stage_cap = 0, 0, 0
        self.best_acc, self.stale, self.best_state = -1.0, 0, None
        self._reset_optimizer = False

    # ---- the network of the current stage -------------------------------------------------------

    def modes(self) -> dict:
        return {info.name: ("tandem" if i <= self.stage else "ann", info.ann_activation)
                for i, info in enumerate(self.model.layers)}

    def _apply_freezing(self) -> None:
        for i, name in enumerate(self.names):
            for p in self.model.layer_parameters(name):
                p.requires_grad_(i >= self.stage and not self.done)
        for p in self.model.readout_parameters():
            p.requires_grad_(not self.done)

    def _start_stage(self, k: int) -> None:
        self.stage = k
        name = self.names[k]
        self.model.set_scales(hybrid_activation_scales(self.model, self.calibration, self.cfg.T, self.modes(),
                                                       [name], self.cfg.percentile))
        remaining = self.cfg.epochs - self.epochs_used
        self.stage_cap = remaining if k == len(self.names) - 1 else remaining // (len(self.names) - k)
        self.stage_epochs, self.best_acc, self.stale, self.best_state = 0, -1.0, 0, None
        self._reset_optimizer = True
        self._apply_freezing()

    # ---- the loop's hooks ----------------------------------------------------------------------

    def setup(self, data, device):
        """Hold out the validation split (from the training set) and enter stage 0; train on the rest."""
        fit, validation = hold_out(data, self.option("ptl_val_fraction"), self.cfg.seed, "--ptl-val-fraction")
        self.val_batches = evaluation_batches(validation, self.cfg, device)
        self.calibration = calibration_images(data, device)
        self._start_stage(0)
        return fit

    def loss(self, x, y, epoch):
        logits = run_hybrid(self.model, x, self.cfg.T, self.modes())
        return F.cross_entropy(logits, y), logits, {"stage": float(self.stage + 1)}

    def train_step(self, x, y, optimizer, epoch):
        if self._reset_optimizer:  # a new stage starts from fresh moment estimates
            optimizer.state.clear()
            self._reset_optimizer = False
        if self.done:
            with torch.no_grad():
                loss, logits, logs = self.loss(x, y, epoch)
            return {"loss": float(loss), "correct": int((logits.argmax(1) == y).sum()), **logs}
        return super().train_step(x, y, optimizer, epoch)

    def on_epoch_end(self, epoch: int, row: dict) -> bool:
        self._end_of_epoch()
        return False

    @torch.no_grad()
    def validation_accuracy(self) -> float:
        """Accuracy of the current (hybrid) network on the held-out split, in evaluation mode."""
        self.train(False)
        correct = total = 0
        for x, y in self.val_batches:
            correct += int((run_hybrid(self.model, x, self.cfg.T, self.modes()).argmax(1) == y).sum())
            total += y.numel()
        return correct / total

    def _end_of_epoch(self) -> None:
        if self.done:
            return
        self.epochs_used += 1
        self.stage_epochs += 1
        acc = self.validation_accuracy()
        if acc > self.best_acc:
            self.best_acc, self.stale = acc, 0
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        else:
            self.stale += 1
        if self.stale >= self.option("ptl_patience") or self.stage_epochs >= self.stage_cap:
            self.model.load_state_dict(self.best_state)
            if self.stage == len(self.names) - 1:
                self.done = True
                self._apply_freezing()
            else:
                self._start_stage(self.stage + 1)

    # ---- checkpoints ---------------------------------------------------------------------------

    SCHEDULER_FIELDS = ("stage", "done", "epochs_used", "stage_epochs", "stage_cap", "best_acc", "stale",
                        "best_state", "_reset_optimizer")

    def extra_state(self):
        return {k: copy.copy(getattr(self, k)) for k in self.SCHEDULER_FIELDS}

    def load_extra_state(self, state):
        for k, v in state.items():
            setattr(self, k, v)
        if self.stage >= 0:
            self._apply_freezing()
