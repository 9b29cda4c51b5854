"""Percentiles of activations, for thresholds, y_norms and clips: one nearest-rank definition, fast for
the high percentiles (99-99.9) they use."""
from __future__ import annotations

import torch


def percentile_of(values: torch.Tensor, percentile: float) -> float:
    """The q-th percentile (0..100) of a flat tensor (nearest rank; no 16M-element limit); 1.0 if it is 0."""
    n = values.numel()
    k = max(1, min(n, int(round(percentile / 100 * n))))
    values = values.float().flatten()
    # the k-th smallest is the smallest of the n-k+1 largest: for the high percentiles used here a
    # partial top-k is 5-100x faster than kthvalue's full selection (it runs on every batch for ynorm)
    v = float(_top_min(values, n - k + 1)) if 2 * k > n else float(values.kthvalue(k).values)
    return v if v > 0 else 1.0


def _top_min(values: torch.Tensor, m: int) -> torch.Tensor:
    """The m-th largest of a flat tensor.  For large tensors, a lower bound from every 16th value
    first discards most of them: if at least m values are >= the bound, the m-th largest is among
    them (exact); otherwise it falls back to the full top-k."""
    if values.numel() >= 1 << 20:
        sample = values[::16]
        bound = sample.topk(min(sample.numel(), 4 * (m // 16) + 8), sorted=False).values.min()
        candidates = values[values >= bound]
        if candidates.numel() >= m:
            return candidates.topk(m, sorted=False).values.min()
    return values.topk(m, sorted=False).values.min()
