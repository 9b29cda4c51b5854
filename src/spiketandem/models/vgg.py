"""VGG-11/13/16 in CIFAR form (3x3 convs + BN + ReLU, pooling after each stage, small classifier), and
the LTL authors' SNN-friendly VGG-11/16, which downsample with stride-2 convolutions and have no pooling."""
from __future__ import annotations

from torch import nn

# channel plan per stage; "P" marks a 2x2 pooling (5 of them: 32x32 -> 1x1, 64x64 -> 2x2)
VGG_PLANS = {
    "vgg11": [64, "P", 128, "P", 256, 256, "P", 512, 512, "P", 512, 512, "P"],
    "vgg13": [64, 64, "P", 128, 128, "P", 256, 256, "P", 512, 512, "P", 512, 512, "P"],
    "vgg16": [64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512, "P"],
}
# the authors' SNN (NOTES.md section 2): (channels, 2) is a stride-2 conv; four of them: 32x32 -> 2x2, then
# FC 2048-512-512-classes at full width.  VGG-16 follows the same pattern (first conv of each stage strided).
STRIDED_PLANS = {
    "vgg11-strided": [64, (128, 2), 256, (256, 2), 512, (512, 2), 512, (512, 2)],
    "vgg16-strided": [64, 64, (128, 2), 128, (256, 2), 256, 256, (512, 2), 512, 512, (512, 2), 512, 512],
}
STRIDED_ACT_CLIP = 2.0  # their teacher's activation relu6(3x)/3 = min(max(x, 0), 2), the default for these


class VGG(nn.Module):
    """VGG with BN; ``width`` scales every channel count (0.25 = a quarter-width net for CPUs).

    Pooling is average pooling by default (spike-friendly; max pooling of spikes is an OR), and the
    classifier is Linear(C*s*s, 512) - ReLU - Dropout - Linear(512, 512) - ReLU - Dropout - Linear(512, classes),
    with hidden width scaled like the convs.
    """

    def __init__(self, plan, num_classes=10, in_channels=3, image_size=32, width=1.0, pool="avg", dropout=0.2):
        super().__init__()
        layers, channels, size = [], in_channels, image_size
        for item in plan:
            if item == "P":
                layers.append(nn.AvgPool2d(2) if pool == "avg" else nn.MaxPool2d(2))
                size //= 2
            else:
                channels_out, stride = item if isinstance(item, tuple) else (item, 1)
                out = max(1, int(round(channels_out * width)))
                layers += [nn.Conv2d(channels, out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out),
                           nn.ReLU(inplace=True)]
                channels = out
                size = (size - 1) // stride + 1
        downsamplings = sum(1 for i in plan if i == "P" or isinstance(i, tuple))
        if size < 1 or image_size < 2 ** downsamplings:
            raise ValueError(f"image size {image_size} is too small for {downsamplings} downsamplings (need >= "
                             f"{2 ** downsamplings})")
        self.features = nn.Sequential(*layers)
        hidden = max(8, int(round(512 * width)))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * size * size, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))
