"""Data-parallel training over several processes: ``torchrun --nproc_per_node=N -m spiketandem train ...``.

Each process (rank) holds a full copy of the rule (student, teacher, optimizer) and sees its shard
of every *global* batch: ``--batch-size`` is the global batch, rank ``r`` gets the ``r``-th of
``world_size`` equal slices of it (``DeviceBatches`` draws the global order and augmentation once
from the seed, so the union of the ranks' slices is exactly the single-process batch).

How gradients are combined -- one mechanism, exact for every rule.  PyTorch's
``DistributedDataParallel`` couples its all-reduce to its own ``forward``: the reducer is armed by
``DDP.forward`` and fires once during the following backward, over the parameters that required a
gradient when it was built.  The rules here do not fit that shape: they run the student through
``Student.run`` with a context rather than ``forward``; online LTL calls backward T times per batch
(and, in its per-step mode, the optimizer T times); sequential offline LTL and PTL switch
``requires_grad`` between stages; DECOLLE and QCFS train extra modules.  So instead of DDP's
reducer, an optimizer *step pre-hook* (``register_step_pre_hook``) averages the gradients of all the
optimizer's parameters across ranks right before every ``optimizer.step()``, in one flat all-reduce.
Each rank's loss is a mean over its (equal-sized) slice, so the average of the ranks' gradients is
the gradient of the mean over the global batch -- whatever number of backward calls or optimizer
steps a rule makes per batch, every step sees the global-batch gradient, and the parameters stay
identical on all ranks (they start identical: rank 0's state is broadcast at the start).  The cost
is that communication does not overlap the backward (DDP's bucketing would); for the models here
one flat all-reduce per step is a small share of a step.

Two more things depend on the batch and are made global:

* BatchNorm in training mode (the teacher, tdBN students): ``GlobalBatchNorm`` replaces each
  ``BatchNorm1d/2d`` of the trained modules and normalises with the mean and variance of the global
  batch (two differentiable all-reduces; the gradient flows through the statistics as in one
  process).  torch's ``SyncBatchNorm`` would do this on CUDA but refuses CPU tensors (gloo).
* LTL's ``ynorm=batch`` / ``running``: the percentile of a layer's teacher activations is taken over
  the global batch (the ranks' activations are all-gathered), so each rank's targets are those of
  the single process.

Layer pipelining (``--pipeline-stages S``, ``pipelining/``) splits the ranks into S stages of
``world / S`` replicas each: ``use_data_parallel_group`` then makes each stage's replicas the group that
the batch shards, the gradient average, ``GlobalBatchNorm`` and ``gather_flat`` span; metric sums,
evaluation shards and broadcasts still span all ranks.

Rules that draw their own batches go through the same sharding (PTL's split of the training set).
PTL's batches are cut from a stream that runs on over the end of each pass; when its training part is
not a whole number of global batches, a batch that straddles a pass holds, across the ranks, the
same number of samples as the single process's but not the same ones (each rank wraps round in its
own slice).  The gradient mechanism is exact either way.

Metrics: the training loss / correct counts and the test accuracy are summed across ranks.  The run
folder (config, metrics, checkpoints, models, summary, plots) is written by rank 0 only; the other
ranks wait at a barrier where they would read what rank 0 wrote.  Randomness inside a step that
draws from the global RNG (dropout in the VGG teachers' classifier, rate encoding) is drawn per rank
(``decorrelate_rng``): statistically the same as one process, but not the same draws, so only
configurations without it reproduce the single-process run to rounding (the test uses those).
"""
from __future__ import annotations

import atexit
import datetime
import os
import sys

import torch
import torch.distributed as dist
from torch import nn

from .errors import SpiketandemError

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
_comm_device: torch.device | None = None
# the data-parallel group of this rank: all ranks, unless layer pipelining (``pipelining/``) splits them into
# stages, each with its own group of replicas (``use_data_parallel_group``)
_dp_group = None
_dp_rank: int | None = None
_dp_size: int | None = None


# ---- process group -----------------------------------------------------------------------------

def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device) -> torch.device:
    """Join the process group described by torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): NCCL on CUDA, gloo on the CPU.  Returns this
    rank's device (``cuda:LOCAL_RANK`` on GPUs).  A no-op in a single process."""
    global _comm_device
    if not launched_by_torchrun():
        return device
    missing = [v for v in ENV_VARS if v not in os.environ]
    if missing:
        raise SpiketandemError(f"WORLD_SIZE > 1 but {', '.join(missing)} not set; launch with "
                               "`torchrun --nproc_per_node=N -m spiketandem train ...`")
    if device.type == "cuda":
        local = int(os.environ["LOCAL_RANK"])
        if local >= torch.cuda.device_count():
            raise SpiketandemError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPU(s) visible; "
                                   "use --nproc_per_node <= the number of GPUs")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://",
                                timeout=datetime.timedelta(minutes=30))
        atexit.register(_shutdown)
    _comm_device = device if device.type == "cuda" else torch.device("cpu")
    return device


def _shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (also before the process group is set up: torchrun's RANK variable)."""
    return rank() == 0 if active() else int(os.environ.get("RANK", "0")) == 0


def barrier() -> None:
    if active():
        dist.barrier()


def _device() -> torch.device:
    return _comm_device or torch.device("cpu")


def use_data_parallel_group(group, rank_in_group: int | None, size: int | None) -> None:
    """Make ``group`` (``size`` ranks, this one ``rank_in_group``; None with size 1) the data-parallel group:
    batch shards, gradient averaging, global BatchNorm and gathered statistics then span it, not all ranks
    (layer pipelining: the ranks of one stage).  ``(None, None, None)``: all ranks again."""
    global _dp_group, _dp_rank, _dp_size
    _dp_group, _dp_rank, _dp_size = group, rank_in_group, size


def data_parallel_rank() -> int:
    return _dp_rank if _dp_size is not None else rank()


def data_parallel_size() -> int:
    return _dp_size if _dp_size is not None else world_size()


def local_batch_size(global_batch: int) -> int:
    """This rank's share of a global batch (which must divide evenly)."""
    world = data_parallel_size()
    if global_batch % world:
        among = (f"number of processes ({world})" if _dp_size is None else
                 f"number of data-parallel replicas ({world}: processes / --pipeline-stages)")
        raise SpiketandemError(f"--batch-size {global_batch} is the global batch and must be divisible by the "
                               f"{among}; use a multiple of {world}")
    return global_batch // world


def shard_args(global_batch: int) -> dict:
    """``DeviceBatches`` keyword arguments for this rank's slices of global batches of ``global_batch``."""
    return {"batch_size": local_batch_size(global_batch), "rank": data_parallel_rank(),
            "world_size": data_parallel_size()}


# ---- reductions ----------------------------------------------------------------------------------

def sum_across(values: list[float]) -> list[float]:
    """Element-wise sum of a list of numbers over ranks (float64)."""
    if not active():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_device())
    dist.all_reduce(t)
    return t.tolist()


def gather_flat(values: torch.Tensor) -> torch.Tensor:
    """The data-parallel ranks' (equal-length) flat tensors concatenated in rank order."""
    if not active() or data_parallel_size() == 1:
        return values
    values = values.contiguous()
    parts = [torch.empty_like(values) for _ in range(data_parallel_size())]
    dist.all_gather(parts, values, group=_dp_group)
    return torch.cat(parts)


def decorrelate_rng(seed: int, epoch: int) -> None:
    """Give each rank its own stream of the global RNG (dropout masks, rate-encoding spikes): every rank
    starts from the same seed (identical models), so without this all ranks would draw the same masks
    for their different samples.  Derived from (seed, epoch, rank), so a resumed run draws alike."""
    if active():
        torch.manual_seed((seed * 1_000_003 + epoch) * 4099 + rank() + 1)


def average_gradients(optimizer: torch.optim.Optimizer, *_args, **_kwargs) -> None:
    """Replace each parameter's gradient by its mean over the data-parallel ranks (a parameter without a
    gradient on a rank contributes zero there; one without a gradient on every rank keeps none).  Frozen
    parameters (``requires_grad`` False, alike on every rank) are left out."""
    params = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
    if not params or not active() or data_parallel_size() == 1:
        return
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.float32)
    grads = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in params]
    flat = torch.cat([torch.cat(grads).to(_device()), present.to(_device())])
    dist.all_reduce(flat, group=_dp_group)
    flat /= data_parallel_size()
    offset, n = 0, len(params)
    seen = flat[-n:].tolist()  # one device-to-host copy, not one per parameter
    for i, p in enumerate(params):
        size = p.numel()
        if seen[i] > 0:
            g = flat[offset:offset + size].view_as(p).to(p.dtype)
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.copy_(g)
        offset += size


def broadcast_module(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if not active():
        return
    for t in list(module.parameters()) + list(module.buffers()):
        data = t.data.to(_device())
        dist.broadcast(data, 0)
        t.data.copy_(data.to(t.device))


# ---- BatchNorm over the global batch ---------------------------------------------------------------

class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training-mode statistics are those of the global batch:

        mean_c = sum_ranks sum_{b,h,w} x / N,   var_c = sum_ranks sum_{b,h,w} (x - mean_c)^2 / N
        y = (x - mean_c) / sqrt(var_c + eps) * weight_c + bias_c

    with N the global count per channel; running statistics take the unbiased ``var * N / (N - 1)``,
    as ``nn.BatchNorm`` does.  Both sums are differentiable all-reduces, so the backward matches a
    single process.  In eval mode, or in a single process, it is ``nn.BatchNorm``."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2D input, got {x.dim()}D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and active() and data_parallel_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce
        group = _dp_group if _dp_group is not None else dist.group.WORLD
        dims = [0] + list(range(2, x.dim()))
        shape = (1, -1) + (1,) * (x.dim() - 2)
        count = x.numel() // x.shape[1] * data_parallel_size()
        mean = all_reduce(x.float().sum(dims), group=group) / count
        centred = x.float() - mean.reshape(shape)
        var = all_reduce((centred * centred).sum(dims), group=group) / count
        y = centred * torch.rsqrt(var + self.eps).reshape(shape)
        if self.affine:
            y = y * self.weight.reshape(shape) + self.bias.reshape(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * count / max(1, count - 1))
        return y.to(x.dtype)


def globalise_batchnorm(module: nn.Module) -> int:
    """Swap every BatchNorm1d/2d inside ``module`` for a ``GlobalBatchNorm`` holding the same
    parameters and buffers (state_dict keys unchanged); returns how many were swapped."""
    swapped = 0
    for name, child in list(module.named_children()):
        if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
            new = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats)
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            new.to(device=next(child.buffers(), torch.empty(0)).device)
            if child.affine:  # keep the very Parameter objects (an optimizer may already hold them)
                new.weight, new.bias = child.weight, child.bias
            setattr(module, name, new)
            swapped += 1
        else:
            swapped += globalise_batchnorm(child)
    return swapped


# ---- wiring a rule ---------------------------------------------------------------------------------

def attach(rule, optimizer: torch.optim.Optimizer) -> None:
    """Make ``rule`` train on the global batch across ranks: identical starting state, global BatchNorm
    statistics, gradients averaged before every optimizer step, and the rule's own rank-dependent
    choices made global through its ``on_distributed`` hook (LTL's normalisers, Dspike's temperature)."""
    if not active():
        return
    for module in rule.modules().values():
        globalise_batchnorm(module)
        broadcast_module(module)
    optimizer.register_step_pre_hook(average_gradients)
    rule.on_distributed(sys.modules[__name__])


def broadcast_float(value: float) -> float:
    """Rank 0's ``value`` on every rank."""
    t = torch.tensor([float(value)], dtype=torch.float64, device=_device())
    dist.broadcast(t, 0)
    return float(t)
