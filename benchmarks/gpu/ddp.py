"""Launch target of the GPU check's distributed step:
``torchrun --nproc_per_node=2 benchmarks/gpu/ddp.py --backend nccl|gloo -- train ...``.

``distributed.setup`` gives rank r the device ``cuda:LOCAL_RANK`` and refuses more ranks than GPUs, which is
right for training but leaves no way to put two ranks on the one GPU a check machine has.  So before the
ordinary ``spiketandem`` command runs, each rank here (1) sets ``LOCAL_RANK=0`` on CUDA, so both ranks use
``cuda:0``, and (2) joins the process group itself with the requested backend and runs one all-reduce, so
that a backend refusing one device twice (NCCL: "Duplicate GPU detected") fails here, with its own message,
and the gpu-check can retry with gloo.  ``distributed.setup`` then finds the group initialised and uses it.
Everything after that is the unchanged training command.
"""
from __future__ import annotations

import datetime
import os
import sys


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) < 3 or argv[0] != "--backend" or argv[2] != "--":
        print("usage: python benchmarks/gpu/ddp.py --backend nccl|gloo -- COMMAND ...", file=sys.stderr)
        return 2
    backend, command = argv[1], argv[3:]
    import torch
    import torch.distributed as dist
    device = command[command.index("--device") + 1] if "--device" in command[:-1] else "auto"
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        os.environ["LOCAL_RANK"] = "0"
        torch.cuda.set_device(0)
    dist.init_process_group(backend, init_method="env://", timeout=datetime.timedelta(seconds=120))
    probe = torch.ones(1, device="cuda:0" if cuda else "cpu")
    dist.all_reduce(probe)
    if float(probe) != dist.get_world_size():
        raise RuntimeError(f"all_reduce over {backend} gave {float(probe)}, expected {dist.get_world_size()}")
    print(f"rank {dist.get_rank()}: {backend} process group of {dist.get_world_size()} on "
          f"{'cuda:0' if cuda else 'cpu'}", file=sys.stderr, flush=True)
    from spiketandem.cli import main as cli_main
    try:
        return cli_main(command)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
