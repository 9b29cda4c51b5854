"""ResNet-20 in CIFAR form (He et al. 2016): 3 stages x 3 basic blocks, global average pooling.

The block reuses one ``self.relu`` module twice, exactly like torchvision's BasicBlock, so the
student builder must give each call its own neuron layer.
"""
from __future__ import annotations

from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet20(nn.Module):
    """ResNet-20; ``base`` channels per stage are (16, 32, 64) x ``width`` (the SNN literature's wider
    "ResNet-20" corresponds to width 4)."""

    def __init__(self, num_classes=10, in_channels=3, image_size=32, width=1.0, blocks=(3, 3, 3)):
        super().__init__()
        planes = [max(4, int(round(c * width))) for c in (16, 32, 64)]
        self.conv1 = nn.Conv2d(in_channels, planes[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.relu = nn.ReLU(inplace=True)
        stages, in_planes = [], planes[0]
        for i, (p, n) in enumerate(zip(planes, blocks)):
            stride = 1 if i == 0 else 2
            stage = [BasicBlock(in_planes, p, stride)] + [BasicBlock(p, p) for _ in range(n - 1)]
            stages.append(nn.Sequential(*stage))
            in_planes = p
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))
