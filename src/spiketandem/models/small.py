"""Small teachers for 8x8 digits (and other tiny images): a CNN and an MLP."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn


class DigitsCNN(nn.Module):
    """conv3x3(32)-BN-ReLU - conv3x3(64)-BN-ReLU - avgpool2 - FC(128)-ReLU - FC(classes).

    Uses a functional ``F.relu`` in ``forward`` on purpose: students must catch those too.  A clipped or
    quantized teacher (``build_model(..., act_clip=...)``) gets one activation module per layer instead
    (``set_activations``).
    """

    def __init__(self, num_classes=10, in_channels=1, image_size=8, width=1.0):
        super().__init__()
        c1, c2, h = (max(4, int(round(c * width))) for c in (32, 64, 128))
        self.conv1 = nn.Conv2d(in_channels, c1, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c2)
        self.pool = nn.AvgPool2d(2)
        self.fc1 = nn.Linear(c2 * (image_size // 2) ** 2, h)
        self.fc2 = nn.Linear(h, num_classes)
        self.act = (F.relu, F.relu, F.relu)

    def set_activations(self, make) -> None:
        """Each layer's activation a module ``make()`` of its own (Hardtanh, QCFS) instead of F.relu."""
        self.act = nn.ModuleList(make() for _ in range(3))

    def forward(self, x):
        x = self.act[0](self.bn1(self.conv1(x)))
        x = self.pool(self.act[1](self.bn2(self.conv2(x))))
        x = self.act[2](self.fc1(x.flatten(1)))
        return self.fc2(x)


class DigitsMLP(nn.Module):
    """Flatten - FC(256)-BN-ReLU - FC(256)-BN-ReLU - FC(classes)."""

    def __init__(self, num_classes=10, in_channels=1, image_size=8, width=1.0):
        super().__init__()
        h = max(8, int(round(256 * width)))
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_channels * image_size * image_size, h), nn.BatchNorm1d(h), nn.ReLU(),
            nn.Linear(h, h), nn.BatchNorm1d(h), nn.ReLU(),
            nn.Linear(h, num_classes),
        )

    def forward(self, x):
        return self.net(x)
