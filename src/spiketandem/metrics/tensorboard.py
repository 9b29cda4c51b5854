"""TensorBoard logging of a training run (``--tensorboard``): one point per epoch.

Scalars: ``loss/train``, ``accuracy/train``, ``accuracy/test``, ``lr``, ``epoch_seconds``, every other
number the rule logs (``train/<key>``, e.g. ``train/ce``, ``train/local``); for spiking students
``firing_rate/<layer>`` and a per-neuron rate histogram ``rate_hist/<layer>`` on a fixed probe batch
of test images; for rules with layer-local losses (LTL) ``local_loss/<layer>`` on the same batch.
"""
from __future__ import annotations

import inspect
from pathlib import Path

import torch

from ..errors import SpiketandemError
from ..neuron import RunContext

PROBE_IMAGES = 128
_ROW_TAGS = {"train_loss": "loss/train", "train_acc": "accuracy/train", "test_acc": "accuracy/test", "lr": "lr",
             "epoch_seconds": "epoch_seconds"}


def summary_writer(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SpiketandemError("--tensorboard needs the tensorboard package: pip install 'spiketandem[tensorboard]' "
                               "(or pip install tensorboard), or drop --tensorboard") from None
    return SummaryWriter(log_dir=str(log_dir))


class TensorBoardLogger:
    """Writes each epoch's metrics row, and probe-batch firing rates and local losses, to ``log_dir``."""

    def __init__(self, log_dir: str | Path, probe: torch.Tensor | None = None, T: int | None = None):
        self.writer = summary_writer(Path(log_dir))
        self.probe = probe[:PROBE_IMAGES] if probe is not None else None
        self.T = T

    def log_epoch(self, rule, row: dict) -> None:
        step = int(row["epoch"])
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(_ROW_TAGS.get(key, f"train/{key}"), value, step)
        if self.probe is not None and self.T is not None:
            self._log_layers(rule, step)
        self.writer.flush()

    @torch.no_grad()
    def _log_layers(self, rule, step: int) -> None:
        model = rule.model
        if not (hasattr(model, "run") and hasattr(model, "neurons")):
            return  # not a spiking student (an ANN, or a model that records no spikes)
        was_training = model.training
        rule.train(False)
        try:
            ctx = RunContext(T=self.T, batch=self.probe.shape[0], records={})
            model.run(self.probe, ctx)
            for name, spikes in ctx.records.items():
                rates = spikes.float().mean(0).flatten()  # per (sample, neuron): spikes / T
                self.writer.add_scalar(f"firing_rate/{name}", float(rates.mean()), step)
                self.writer.add_histogram(f"rate_hist/{name}", rates.cpu(), step)
            for name, value in self._local_losses(rule, ctx.records).items():
                self.writer.add_scalar(f"local_loss/{name}", value, step)
        finally:
            rule.train(was_training)

    def _local_losses(self, rule, records: dict) -> dict[str, float]:
        """Per-layer local losses of rules that expose ``taps`` and ``local_losses(records, acts, update)``
        (offline LTL), evaluated without updating their running statistics."""
        local = getattr(rule, "local_losses", None)
        if local is None or not hasattr(rule, "taps") or "update" not in inspect.signature(local).parameters:
            return {}
        _, acts = rule.taps(self.probe)
        return {name: float(loss) for name, loss in local(records, acts, update=False).items()}

    def close(self) -> None:
        self.writer.close()
