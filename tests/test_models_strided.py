"""The LTL authors' SNN-friendly VGGs: stride-2 convolutions, no pooling anywhere, clipped ReLU by default."""
import pytest
import torch
from torch import nn

from spiketandem.errors import SpiketandemError
from spiketandem.models import build_model
from spiketandem.neuron import NeuronConfig
from spiketandem.student import build_student


@pytest.mark.parametrize("name,convs", [("vgg11-strided", 8), ("vgg16-strided", 13)])
def test_strided_vgg_has_no_pooling_and_four_stride_two_convs(name, convs):
    model = build_model(name, 10, 3, 32, width=0.25)
    modules = list(model.modules())
    assert not any(isinstance(m, (nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d)) for m in modules)
    conv_layers = [m for m in modules if isinstance(m, nn.Conv2d)]
    assert len(conv_layers) == convs and sum(m.stride == (2, 2) for m in conv_layers) == 4
    assert all(isinstance(m, nn.Hardtanh) and m.max_val == 2.0 for m in modules if isinstance(m, (nn.ReLU, nn.Hardtanh)))
    x = torch.randn(2, 3, 32, 32)
    assert model.features(x).shape == (2, 128, 2, 2)  # 512 channels at full width -> FC 2048 as the authors'
    assert model(x).shape == (2, 10)
    assert build_model(name, 10, 3, 32, width=1.0).classifier[1].in_features == 2048


def test_strided_vgg_becomes_a_student_with_one_neuron_layer_per_relu():
    model = build_model("vgg11-strided", 10, 3, 32, width=0.125).eval()
    student = build_student(model, NeuronConfig(), torch.zeros(2, 3, 32, 32), calibration_images=torch.randn(8, 3, 32, 32))
    assert len(student.layers) == 10  # 8 convs + 2 hidden FC layers
    assert all(layer.ceiling == 2.0 for layer in student.layers)
    assert student(torch.randn(2, 3, 32, 32), 4).shape == (4, 2, 10)


def test_strided_vgg_needs_16_pixels_and_takes_another_clip():
    with pytest.raises(SpiketandemError, match="too small"):
        build_model("vgg11-strided", 10, 3, 8)
    model = build_model("vgg11-strided", 10, 3, 16, width=0.125, act_clip=1.0)
    assert {m.max_val for m in model.modules() if isinstance(m, nn.Hardtanh)} == {1.0}
