"""The cost of being SNN-friendly: the zoo's ViT (``models/vit.py``: BatchNorm, clipped ReLU, softmax-free
attention) against a standard ViT of the same size (LayerNorm, GELU, softmax attention, pre-norm residuals),
both trained by ``spiketandem teacher`` with the same flags and seeds.

    python benchmarks/vit_teachers.py --dataset digits --epochs 40 --seeds 0 1 2 --out /tmp/vit-teachers

The standard ViT is registered in the zoo for the run only (``MODELS["<arch>-standard"]``), so that both go
through the same command, optimiser, schedule and augmentation.  Writes ``OUT/vit_teachers.json``: one row
per architecture and seed (test accuracy, parameters, seconds) and the mean and sample standard deviation."""
from __future__ import annotations

import argparse
import json
import statistics
from functools import partial
from pathlib import Path

import torch
from torch import nn

from spiketandem import cli
from spiketandem.models import MODELS, build_model
from spiketandem.models.vit import VIT_PLANS, patch_size_for


class StandardBlock(nn.Module):
    """x + MHSA(LN(x)), then x + W_2 GELU(W_1 LN(x)): the pre-norm block of Dosovitskiy et al. (2021)."""

    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x):
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class StandardViT(nn.Module):
    """Patch embedding by convolution, learned positions, pre-norm blocks, final LayerNorm, mean over tokens."""

    def __init__(self, name, num_classes=10, in_channels=3, image_size=32, width=1.0):
        super().__init__()
        dim, depth, heads, mlp_ratio = VIT_PLANS[name]
        dim = max(heads, int(round(dim * width / heads)) * heads)
        patch = patch_size_for(image_size)
        tokens = (image_size // patch) ** 2
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, stride=patch)
        self.position = nn.Parameter(torch.zeros(1, tokens, dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.blocks = nn.Sequential(*(StandardBlock(dim, heads, int(round(dim * mlp_ratio))) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.position
        return self.head(self.norm(self.blocks(x)).mean(1))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="vit-tiny", choices=sorted(VIT_PLANS))
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more `spiketandem teacher` flags")
    args = parser.parse_args(argv)
    standard = f"{args.arch}-standard"
    MODELS[standard] = partial(StandardViT, args.arch)
    rows = []
    for arch in (args.arch, standard):
        for seed in args.seeds:
            run = args.out / f"{arch}-seed{seed}"
            status = cli.main(["teacher", "--arch", arch, "--dataset", args.dataset, "--epochs", str(args.epochs),
                               "--width", str(args.width), "--seed", str(seed), "--out", str(run), "--overwrite",
                               "--quiet", *args.extra])
            if status:
                raise SystemExit(f"spiketandem teacher failed for {arch} seed {seed}")
            summary = json.loads((run / "summary.json").read_text())
            model = build_model(arch, 10, 1 if args.dataset in ("digits", "fashion-mnist") else 3,
                                8 if args.dataset == "digits" else 28 if args.dataset == "fashion-mnist" else 32,
                                args.width)
            rows.append({"arch": arch, "seed": seed, "teacher_acc": summary["teacher_acc"],
                         "train_seconds": summary["train_seconds"],
                         "parameters": sum(p.numel() for p in model.parameters())})
    result = {"dataset": args.dataset, "epochs": args.epochs, "width": args.width, "extra_flags": args.extra,
              "rows": rows, "mean": {}}
    for arch in (args.arch, standard):
        accs = [r["teacher_acc"] for r in rows if r["arch"] == arch]
        result["mean"][arch] = {"teacher_acc": statistics.mean(accs),
                                "std": statistics.stdev(accs) if len(accs) > 1 else None, "seeds": len(accs)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "vit_teachers.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result["mean"], indent=1))
    return result


if __name__ == "__main__":
    main()
