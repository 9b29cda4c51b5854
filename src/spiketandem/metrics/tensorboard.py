"""TensorBoard logging of a training run (``--tensorboard``).

Per epoch (``log_epoch``): ``loss/train``, ``accuracy/train``, ``accuracy/test``, ``lr``,
``epoch_seconds``, every other number the rule logs (``train/<key>``, e.g. ``train/ce``,
``train/local``); for spiking students ``firing_rate/<layer>`` and a per-neuron rate histogram
``rate_hist/<layer>`` on a fixed probe batch of test images; for rules with layer-local losses (LTL)
``local_loss/<layer>`` on the same batch.  Layers are named by the teacher module path of the ReLU
they replace (as in the report).

Per step (``log_step``, every ``step_every`` optimizer steps): the mean over those steps of the loss
and of every other number the step returns (``step/loss``, ``step/<key>``), and ``step/accuracy``.

Once (``log_hparams``, or ``config=`` at construction): the run configuration in TensorBoard's HPARAMS
tab, against the metrics ``accuracy/test``, ``accuracy/train`` and ``loss/train`` of the same run.
"""
from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import torch

from ..errors import SpiketandemError

PROBE_IMAGES = 128
STEP_EVERY = 10   # optimizer steps per point of the step/* curves
HPARAM_METRICS = ("accuracy/test", "accuracy/train", "loss/train")
_ROW_TAGS = {"train_loss": "loss/train", "train_acc": "accuracy/train", "test_acc": "accuracy/test", "lr": "lr",
             "epoch_seconds": "epoch_seconds"}


def summary_writer(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SpiketandemError("--tensorboard needs the tensorboard package: pip install 'spiketandem[tensorboard]' "
                               "(or pip install tensorboard), or drop --tensorboard") from None
    return SummaryWriter(log_dir=str(log_dir))


def _number(value) -> float | None:
    """A Python float from a number or a one-element tensor (NaN and inf included: a diverging loss is
    worth seeing); None for anything else."""
    if isinstance(value, bool):
        return None
    if torch.is_tensor(value):
        return float(value.detach()) if value.numel() == 1 else None
    return float(value) if isinstance(value, (int, float)) else None


def hparam_values(config) -> dict:
    """The run config as TensorBoard hparams: nested values (a rule's ``options``) as ``options.key``;
    numbers, strings and booleans as they are, None as "default", lists as text."""
    if dataclasses.is_dataclass(config):
        config = dataclasses.asdict(config)
    elif hasattr(config, "to_dict"):
        config = config.to_dict()
    flat = {}

    def add(key, value):
        if isinstance(value, dict):
            for k, v in value.items():
                add(f"{key}.{k}", v)
        elif value is None:
            flat[key] = "default"
        elif isinstance(value, (bool, int, float, str)):
            flat[key] = value
        else:
            flat[key] = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)

    for key, value in dict(config).items():
        add(str(key), value)
    return flat


class TensorBoardLogger:
    """Writes the run config (hparams), step losses, each epoch's metrics row, and probe-batch firing
    rates and local losses, to ``log_dir``.

    ``config``: the run config (a ``RunConfig`` or a dict), logged once as hparams; ``step_every``:
    optimizer steps averaged into one point of the ``step/*`` curves."""

    def __init__(self, log_dir: str | Path, probe: torch.Tensor | None = None, T: int | None = None,
                 config=None, step_every: int = STEP_EVERY):
        self.writer = summary_writer(Path(log_dir))
        self.probe = probe[:PROBE_IMAGES] if probe is not None else None
        self.T = T
        self.step_every = max(1, int(step_every))
        self._window: dict[str, list[float]] = {}  # key -> [sum, steps that logged it]
        self._window_steps = 0
        self._window_samples = 0
        self._last_step: int | None = None
        if config is not None:
            self.log_hparams(config)

    def log_hparams(self, config) -> None:
        """The run config in the HPARAMS tab of this run (no second run folder, unlike
        ``SummaryWriter.add_hparams``); its metrics are this run's ``HPARAM_METRICS`` scalars."""
        from torch.utils.tensorboard.summary import hparams
        values = hparam_values(config)
        for summary in hparams(values, {tag: 0.0 for tag in HPARAM_METRICS}):
            self.writer.file_writer.add_summary(summary)
        self.writer.flush()

    def log_step(self, step: int, logs: dict, samples: int | None = None) -> None:
        """One optimizer step's ``logs`` (what ``rule.train_step`` returns: ``loss``, ``correct`` and the
        rule's other numbers, e.g. ``ce``, ``local``); ``step`` counts optimizer steps from the start of
        training (it keeps counting across epochs and resumes); ``samples``: the batch's size, for
        ``step/accuracy`` (from ``correct``).  Every ``step_every`` steps the means over those steps
        are written at ``step``."""
        for key, value in logs.items():
            number = _number(value)
            if number is not None:
                total = self._window.setdefault(key, [0.0, 0])
                total[0] += number
                total[1] += 1
        self._window_steps += 1
        self._window_samples += int(samples or 0)
        self._last_step = int(step)
        if self._window_steps >= self.step_every:
            self._write_window(self._last_step)

    def _write_window(self, step: int) -> None:
        for key, (total, count) in self._window.items():
            if key == "correct":
                if self._window_samples:
                    self.writer.add_scalar("step/accuracy", total / self._window_samples, step)
            else:
                self.writer.add_scalar(f"step/{key}", total / count, step)
        self._window, self._window_steps, self._window_samples = {}, 0, 0

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
            ctx = rule.context(self.probe.shape[0], self.T, records={})
            model.run(self.probe, ctx)
            neurons = model.neurons
            path = lambda name: getattr(neurons.get(name), "path", None) or name  # noqa: E731  (teacher module)
            for name, spikes in ctx.records.items():
                rates = spikes.float().mean(0).flatten()  # per (sample, neuron): spikes / T
                self.writer.add_scalar(f"firing_rate/{path(name)}", float(rates.mean()), step)
                self.writer.add_histogram(f"rate_hist/{path(name)}", rates.cpu(), step)
            for name, value in self._local_losses(rule, ctx.records).items():
                self.writer.add_scalar(f"local_loss/{path(name)}", value, step)
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
        """Write what the step window holds (the last steps of training) and close the event file."""
        if self._window_steps and self._last_step is not None:
            self._write_window(self._last_step)
        self.writer.close()
