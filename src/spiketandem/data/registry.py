"""Every dataset a run can name, image and event datasets together, each with its default teacher
architecture: the one registry that ``train``, ``teacher``, ``reproduce``, ``compare`` and the help ask.

Adding a dataset: its format reader under ``formats/`` (images) or in ``events.py`` (event cameras), its
``DatasetSpec``/``EventDatasetSpec`` entry there, and its default architecture here if not ``vgg11``."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import SpiketandemError
from .events import SPECS as EVENT_SPECS
from .specs import SPECS as IMAGE_SPECS

FALLBACK_ARCH = "vgg11"
_SMALL_IMAGES = {"digits": "digits-cnn", "fashion-mnist": "digits-cnn"}


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    kind: str          # "image" (ArrayDataset) or "event" (EventDataset: binned into T frames)
    default_arch: str  # the zoo architecture used when --arch is not given


DATASETS: dict[str, DatasetEntry] = {
    **{name: DatasetEntry(name, "image", _SMALL_IMAGES.get(name, FALLBACK_ARCH)) for name in IMAGE_SPECS},
    **{name: DatasetEntry(name, "event", FALLBACK_ARCH) for name in EVENT_SPECS},
}


def dataset_entry(name: str) -> DatasetEntry:
    if name not in DATASETS:
        raise SpiketandemError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def is_event_dataset(name: str) -> bool:
    return dataset_entry(name).kind == "event"


def default_arch(name: str) -> str:
    return dataset_entry(name).default_arch
