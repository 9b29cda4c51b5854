"""``RuleWrapper``: a rule that runs another rule (``inner``) differently -- on a chip (``hardware/calibrate.py``
``OnChip``), as pipelined stages (``pipelining/rule.py`` ``Pipelined``).  It forwards the whole rule contract
(``rules/base.py``) to ``inner``, so a wrapper overrides only what it changes."""
from __future__ import annotations

import torch

from .base import Rule


class RuleWrapper(Rule):
    """Forwards every method of the rule contract to ``inner``; the trained modules, the config, the data
    info, the teacher and the student are ``inner``'s."""

    def __init__(self, inner: Rule):  # no Rule.__init__: the inner rule checked its options when it was built
        self.inner = inner
        self.cfg, self.info, self.teacher, self.model = inner.cfg, inner.info, inner.teacher, inner.model
        self.name, self.spiking, self.needs_teacher = inner.name, inner.spiking, inner.needs_teacher

    def option(self, name: str):
        return self.inner.option(name)

    def optimizer_settings(self, cfg) -> dict:
        return self.inner.optimizer_settings(cfg)

    # what the rule trains
    def modules(self):
        return self.inner.modules()

    def optim_parameters(self):
        return self.inner.optim_parameters()

    def extra_state(self):
        return self.inner.extra_state()

    def load_extra_state(self, state):
        self.inner.load_extra_state(state)

    def state_dict(self):
        return self.inner.state_dict()

    def load_state_dict(self, state):
        self.inner.load_state_dict(state)

    def train(self, mode: bool = True):
        self.inner.train(mode)

    # lifecycle
    def setup(self, data, device):
        return self.inner.setup(data, device)

    def on_epoch_start(self, epoch):
        self.inner.on_epoch_start(epoch)

    def on_epoch_end(self, epoch, row):
        return self.inner.on_epoch_end(epoch, row)

    def on_distributed(self, comm):
        self.inner.on_distributed(comm)

    def summary_extras(self):
        return self.inner.summary_extras()

    # training and inference
    def loss(self, x, y, epoch):
        return self.inner.loss(x, y, epoch)

    def train_step(self, x, y, optimizer, epoch):
        return self.inner.train_step(x, y, optimizer, epoch)

    def membrane_init(self):
        return self.inner.membrane_init()

    def context(self, batch, T=None, **fields):
        return self.inner.context(batch, T, **fields)

    @torch.no_grad()
    def predict(self, x, T=None):
        return self.inner.predict(x, T)
