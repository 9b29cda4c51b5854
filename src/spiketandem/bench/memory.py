"""Peak memory of one piece of work (a training step), isolated from everything allocated before it.

On CUDA: the allocator's own statistics, ``max_memory_allocated - memory_allocated`` around the work.
On the CPU (no allocator statistics there): ``LiveTensorBytes``, a TorchDispatchMode that sees every
aten op run inside the block (forward, autograd backward and optimizer alike), adds the bytes of each
freshly allocated output storage, and subtracts them when that storage is freed (a weakref finalizer
on the storage).  The result is the peak of the bytes held by tensors the work created -- saved
activations, gradients, temporaries -- and nothing of the interpreter, the parameters or the data
that existed before.  Scratch buffers internal to a single kernel (which no aten op returns) are not
seen; they do not grow with the time window.
"""
from __future__ import annotations

import weakref
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class LiveTensorBytes(TorchDispatchMode):
    """``with LiveTensorBytes() as m: work()`` then ``m.peak`` = max over time of
    sum(bytes of storages allocated inside the block and still alive), ``m.live`` = that sum at the end."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._tracked: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # outputs that alias an input (views, in-place and out= ops) hold no new storage
        if not any(r.alias_info is not None for r in func._schema.returns):
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    self._track(t.untyped_storage())
        return out

    def _track(self, storage) -> None:
        key = storage._cdata
        if key in self._tracked or storage.nbytes() == 0:
            return
        size = storage.nbytes()
        self._tracked.add(key)
        self.live += size
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, key, size)

    def _free(self, key: int, size: int) -> None:
        if key in self._tracked:
            self._tracked.discard(key)
            self.live -= size


def peak_bytes(work: Callable[[], object], device: torch.device) -> int:
    """Peak bytes that ``work()`` allocates on ``device`` above what was allocated before it."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        work()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    with LiveTensorBytes() as meter:
        work()
    return int(meter.peak)
