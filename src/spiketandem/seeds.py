"""Repeating a run over several seeds, the one convention of every command that does (``compare``,
``reproduce``, ``noise``): ``--seeds S [S ...]``, one run per seed, each an ordinary run folder, and every
number reported as the mean and the sample standard deviation over the seeds,

    mean = (1/n) sum_i a_i,    std = sqrt( sum_i (a_i - mean)^2 / (n - 1) )    (None for n = 1).

A single seed keeps the run's own folder name; several seeds put seed S in ``<name>-seed<S>``."""
from __future__ import annotations

import math
import numbers
from pathlib import Path

from .errors import SpiketandemError

MAX_SEED = 2 ** 32 - 1


def check_seeds(seeds, flag: str = "--seeds") -> list[int]:
    """``seeds`` as a list of distinct integers in [0, 2^32 - 1]; else one clear error."""
    values = list(seeds) if isinstance(seeds, (list, tuple)) else [seeds]
    if (not values or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or not 0 <= s <= MAX_SEED
                          for s in values)):
        raise SpiketandemError(f"{flag} must be one or more integers in [0, {MAX_SEED}], got {seeds!r}")
    if len(set(values)) != len(values):
        raise SpiketandemError(f"{flag} names a seed twice ({' '.join(map(str, values))}); each seed is one run")
    return [int(s) for s in values]


def seed_folder(folder: Path, seed: int, seeds: list[int]) -> Path:
    """The run folder of ``seed`` among ``seeds``: ``folder`` itself for a single seed, else ``folder-seed<S>``."""
    return folder if len(seeds) == 1 else folder.with_name(f"{folder.name}-seed{seed}")


def mean_std(values) -> tuple[float | None, float | None]:
    """The mean and sample standard deviation (n - 1) of the values that are not None; (None, None) when
    there are none, std None for a single value."""
    found = [float(v) for v in values if v is not None]
    if not found:
        return None, None
    mean = sum(found) / len(found)
    if len(found) == 1:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in found) / (len(found) - 1))


def mean_std_text(mean: float | None, std: float | None, n: int, percent: bool = True) -> str:
    """"91.20 ± 0.31% (3 seeds)", "91.20%" for one seed, "–" for none (``percent``: fractions shown in %)."""
    if mean is None:
        return "–"
    scale, unit = (100, "%") if percent else (1, "")
    if std is None:
        return f"{scale * mean:.2f}{unit}"
    return f"{scale * mean:.2f} ± {scale * std:.2f}{unit} ({n} seeds)"
