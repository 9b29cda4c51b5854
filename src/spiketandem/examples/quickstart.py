"""Bring your own teacher: train an ANN, distil it into a spiking student by LTL, measure, export.

    python -m spiketandem.examples.quickstart            # ~1-2 minutes on a laptop CPU
    python -m spiketandem.examples.quickstart --tiny     # seconds (what the test suite runs)
"""
import argparse

import torch
from torch import nn

from spiketandem import api
from spiketandem.data import load_dataset


def digits(n: int | None = None):
    """The 8x8 digits shipped with spiketandem (UCI optical digits, 1,437 training and 360 test images) as
    normalised float images [N, 1, 8, 8] and int64 labels: the first ``n`` training images (all if None)
    and the test set."""
    data = load_dataset("digits")

    def normalise(x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255 - data.mean[0]) / data.std[0]
    return normalise(data.train_x[:n]), data.train_y[:n], normalise(data.test_x), data.test_y


def train_teacher(teacher: nn.Module, x, y, epochs: int) -> nn.Module:
    """Plain ANN training (any way you like: spiketandem only needs the trained module)."""
    opt = torch.optim.Adam(teacher.parameters(), lr=3e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(y)).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(teacher(x[idx]), y[idx]).backward()
            opt.step()
    return teacher.eval()


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--tiny", action="store_true", help="a few hundred images and one epoch (for CI)")
    p.add_argument("--out", default="student.nir")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    train_x, train_y, test_x, test_y = digits(250 if args.tiny else None)

    # 1. your teacher: any conv/linear/BatchNorm/pooling/flatten/ReLU network
    teacher = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AvgPool2d(2),
                            nn.Flatten(), nn.Linear(16 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))
    train_teacher(teacher, train_x, train_y, epochs=3 if args.tiny else 20)

    # 2. the spiking student, trained by offline Local Tandem Learning (reset to zero so it exports to NIR)
    student = api.train_ltl(teacher, train_x, train_y, T=8, epochs=1 if args.tiny else 5, reset="zero", log=print)

    # 3. evaluate, count operations, export
    print(f"teacher accuracy {api.accuracy(teacher, test_x, test_y):.3f}")
    print(f"student accuracy (T=8) {api.accuracy(student, test_x, test_y, T=8):.3f}")
    print(f"SynOps / teacher MACs (T=8) {api.synops_ratio(student, teacher, test_x, T=8):.3f}")
    print(f"wrote {api.export_nir(student, args.out)}")
    return student


if __name__ == "__main__":
    main()
