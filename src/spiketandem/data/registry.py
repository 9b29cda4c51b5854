"""Every dataset a run can name, image and event datasets together: the one table (torch-free) that
``train``, ``teacher``, ``reproduce``, ``compare``, the ``--dataset`` choices and its help read.

Adding a dataset: a reader module under ``formats/`` that declares its spec next to its reader (``SPECS``:
image datasets a ``specs.DatasetSpec`` with its ``layouts.Layout``s, event datasets an
``events.EventDatasetSpec`` with its file reader), and its one line here naming that module."""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from ..errors import SpiketandemError


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    kind: str                     # "image" (ArrayDataset) or "event" (EventDataset: binned into T frames)
    reader: str                   # the module under data/formats/ whose SPECS holds its spec
    default_arch: str = "vgg11"   # the zoo architecture used when --arch is not given

    def spec(self):
        """Its ``DatasetSpec`` or ``EventDatasetSpec``, from its reader module (imported on first use)."""
        return importlib.import_module(f"{__package__}.formats.{self.reader}").SPECS[self.name]


DATASETS: dict[str, DatasetEntry] = {e.name: e for e in (
    DatasetEntry("digits", "image", "digits", "digits-cnn"),
    DatasetEntry("cifar10", "image", "cifar"),
    DatasetEntry("cifar100", "image", "cifar"),
    DatasetEntry("tiny-imagenet", "image", "tiny_imagenet"),
    DatasetEntry("fashion-mnist", "image", "idx", "digits-cnn"),
    DatasetEntry("imagefolder", "image", "images"),
    DatasetEntry("nmnist", "event", "event_cameras"),
    DatasetEntry("cifar10-dvs", "event", "event_cameras"),
    DatasetEntry("dvs-gesture", "event", "event_cameras"),
)}
IMAGE_DATASETS = tuple(name for name, e in DATASETS.items() if e.kind == "image")
EVENT_DATASETS = tuple(name for name, e in DATASETS.items() if e.kind == "event")
# the --dataset setting's help (config.py)
DATASET_HELP = (f"{', '.join(IMAGE_DATASETS)}; event cameras: {', '.join(EVENT_DATASETS)} (binned into --T frames, "
                "docs/events.md)")


def dataset_entry(name: str) -> DatasetEntry:
    if name not in DATASETS:
        raise SpiketandemError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def is_event_dataset(name: str) -> bool:
    return dataset_entry(name).kind == "event"


def default_arch(name: str) -> str:
    return dataset_entry(name).default_arch
