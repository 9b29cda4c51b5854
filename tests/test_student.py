"""Teacher -> student graph: ReLU mapping (reused modules, functional calls), BN folding, time folding,
the constant-input first layer, conversion accuracy, locality of LTL gradients, clear errors."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spiketandem.errors import SpiketandemError
from spiketandem.models import build_model
from spiketandem.neuron import NeuronConfig, RunContext
from spiketandem.student import _fold_batchnorm, build_student, trace_teacher, TeacherTaps


def warmed(model, shape, steps=3):
    """A model whose BN running statistics are non-trivial."""
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(torch.randn(16, *shape))
    return model.eval()


def test_reused_relu_module_gets_one_neuron_per_call():
    teacher = warmed(build_model("resnet20", width=0.25), (3, 32, 32))
    student = build_student(teacher, NeuronConfig("if"), torch.zeros(2, 3, 32, 32))
    paths = [layer.path for layer in student.layers]
    assert len(paths) == 1 + 9 * 2  # stem + two per block
    assert "layer1.0.relu" in paths and "layer1.0.relu@1" in paths
    assert len(set(paths)) == len(paths)


def test_functional_relu_is_found_and_teacher_taps_pair_by_name():
    teacher = warmed(build_model("digits-cnn", in_channels=1, image_size=8), (1, 8, 8))
    student = build_student(teacher, NeuronConfig("if"), torch.zeros(2, 1, 8, 8))
    taps = TeacherTaps(teacher, torch.zeros(2, 1, 8, 8))
    assert [layer.name for layer in student.layers] == taps.names and len(taps.names) == 3
    logits, acts = taps(torch.randn(4, 1, 8, 8))
    torch.testing.assert_close(logits, teacher(torch.randn(4, 1, 8, 8)) * 0 + logits)
    assert all((a >= 0).all() for a in acts.values())


def test_teacher_taps_match_hooked_relu_outputs():
    teacher = warmed(build_model("vgg11", width=0.125), (3, 32, 32))
    x = torch.randn(3, 3, 32, 32)
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.clone())) for m in teacher.modules()
             if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        logits = teacher(x)
    for h in hooks:
        h.remove()
    tap_logits, acts = TeacherTaps(teacher, x)(x)
    torch.testing.assert_close(tap_logits, logits)
    for expected, got in zip(seen, acts.values()):
        torch.testing.assert_close(got, expected)


def test_batchnorm_folding_is_exact():
    teacher = warmed(build_model("vgg11", width=0.125), (3, 32, 32))
    gm = trace_teacher(copy.deepcopy(teacher), torch.zeros(2, 3, 32, 32))  # folding rewrites the modules
    reference = gm(torch.ones(1, 3, 32, 32))
    _fold_batchnorm(gm)
    gm.recompile()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in gm.modules())
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(gm(x), teacher(x), rtol=1e-4, atol=1e-5)
    assert reference.shape == (1, 10)


@pytest.mark.parametrize("arch,shape", [("digits-mlp", (1, 8, 8)), ("resnet20", (3, 32, 32)), ("vgg11", (3, 32, 32))])
def test_converted_if_student_approaches_teacher_as_T_grows(arch, shape):
    # with thresholds at the max activation, IF rates x amplitude -> teacher activations (rate coding),
    # so the mean readout converges to the teacher's logits
    teacher = warmed(build_model(arch, in_channels=shape[0], image_size=shape[1], width=0.25), shape)
    x = torch.randn(6, *shape)
    student = build_student(teacher, NeuronConfig("if"), x, calibration_images=torch.randn(64, *shape), percentile=100)
    with torch.no_grad():
        ref = teacher(x)
        errors = [float((student(x, T).mean(0) - ref).norm() / ref.norm()) for T in (8, 64, 512)]
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.05


def test_first_layer_runs_once_on_the_constant_input():
    teacher = warmed(build_model("digits-cnn", in_channels=1, image_size=8), (1, 8, 8))
    student = build_student(teacher, NeuronConfig("lif"), torch.zeros(2, 1, 8, 8))
    batch_sizes = {}
    for name, m in student.graph_module.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.register_forward_pre_hook(lambda m, a, n=name: batch_sizes.__setitem__(n, a[0].shape[0]))
    student(torch.randn(5, 1, 8, 8), T=7)
    assert batch_sizes == {"conv1": 5, "conv2": 35, "fc1": 35, "fc2": 35}
    rate = build_student(teacher, NeuronConfig("lif"), torch.zeros(2, 1, 8, 8), encoding="rate")
    batch_sizes.clear()
    for name, m in rate.graph_module.named_modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_pre_hook(lambda m, a, n=name: batch_sizes.__setitem__(n, a[0].shape[0]))
    rate(torch.randn(5, 1, 8, 8), T=7)
    assert batch_sizes["conv1"] == 35


def test_rate_encoding_is_unbiased():
    teacher = warmed(build_model("digits-mlp", in_channels=1, image_size=8), (1, 8, 8))
    student = build_student(teacher, NeuronConfig("if"), torch.zeros(2, 1, 8, 8), encoding="rate")
    x = torch.randn(3, 1, 8, 8)
    torch.manual_seed(0)
    spikes = student.encode(x, 4000).reshape(4000, 3, 1, 8, 8)
    torch.testing.assert_close(spikes.mean(0), x, atol=0.15, rtol=0)
    peaks = x.abs().flatten(1).amax(1)
    assert set(spikes[:, 0].abs().unique().tolist()) <= {0.0, peaks[0].item()}


def test_detached_outputs_make_gradients_layer_local():
    teacher = warmed(build_model("digits-cnn", in_channels=1, image_size=8), (1, 8, 8))
    student = build_student(teacher, NeuronConfig("lif"), torch.zeros(2, 1, 8, 8))
    names = [layer.name for layer in student.layers]
    ctx = RunContext(T=6, batch=4, detach=True, records={})
    student.run(torch.randn(4, 1, 8, 8), ctx)
    ctx.records[names[1]].mean(0).sum().backward()
    for name in names:
        grads = [p.grad for p in student.layer_parameters(name)]
        assert all((g is not None and g.abs().sum() > 0) if name == names[1] else g is None for g in grads), name
    assert all(p.grad is None for p in student.readout_parameters())


def test_unmappable_teacher_is_refused_naming_the_module():
    teacher = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GELU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    with pytest.raises(SpiketandemError, match=r"GELU.*'1'"):
        build_student(teacher, NeuronConfig(), torch.zeros(2, 1, 8, 8))

    class Sig(nn.Module):
        def forward(self, x):
            return torch.sigmoid(F.relu(x)).sum(1)

    with pytest.raises(SpiketandemError, match="sigmoid"):
        build_student(Sig(), NeuronConfig(), torch.zeros(2, 3))


def test_teacher_without_relu_and_batch_size_misuse_are_refused():
    with pytest.raises(SpiketandemError, match="no ReLU"):
        build_student(nn.Sequential(nn.Linear(4, 2)), NeuronConfig(), torch.zeros(2, 4))

    class UsesInputBatch(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            b = x.size(0)
            return F.relu(self.fc(x)).view(b, -1)

    with pytest.raises(SpiketandemError, match="batch size"):
        build_student(UsesInputBatch(), NeuronConfig(), torch.zeros(2, 4))


def test_student_input_shape_is_checked():
    teacher = warmed(build_model("digits-mlp", in_channels=1, image_size=8), (1, 8, 8))
    student = build_student(teacher, NeuronConfig(), torch.zeros(2, 1, 8, 8))
    with pytest.raises(SpiketandemError, match=r"\[B, 1, 8, 8\]"):
        student(torch.zeros(2, 3, 8, 8), 4)


@pytest.mark.parametrize("arch", ["vgg11", "vgg13", "vgg16", "resnet20"])
@pytest.mark.parametrize("size,classes", [(32, 10), (64, 200)])
def test_zoo_builds_for_cifar_and_tiny_imagenet_shapes(arch, size, classes):
    model = build_model(arch, num_classes=classes, image_size=size, width=0.125).eval()
    assert model(torch.zeros(2, 3, size, size)).shape == (2, classes)


@pytest.mark.parametrize("init", ["teacher", "random"])
def test_student_of_a_frozen_teacher_is_fully_trainable(init):
    teacher = warmed(build_model("digits-cnn", in_channels=1, image_size=8), (1, 8, 8))
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = build_student(teacher, NeuronConfig(), torch.zeros(2, 1, 8, 8), init=init)
    assert all(p.requires_grad for p in student.parameters())
    assert not any(p.requires_grad for p in teacher.parameters())


def test_clipped_relu_teacher_becomes_a_student_and_keeps_its_clip():
    teacher = warmed(build_model("vgg11", width=0.125, act_clip=0.5), (3, 32, 32))
    assert not any(isinstance(m, nn.ReLU) for m in teacher.modules())
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        _, acts = TeacherTaps(teacher, x)(x)
    assert len(acts) == 10 and all(0 <= float(a.min()) and float(a.max()) <= 0.5 for a in acts.values())
    assert any(float(a.max()) == 0.5 for a in acts.values())  # the clip binds somewhere
    student = build_student(teacher, NeuronConfig("if"), x, calibration_images=torch.randn(64, 3, 32, 32))
    assert [layer.name for layer in student.layers] == list(acts)
    # a Hardtanh that is not a clipped ReLU (negative lower bound) has no spiking counterpart
    bad = nn.Sequential(nn.Linear(4, 4), nn.Hardtanh(-1.0, 1.0), nn.Linear(4, 2))
    with pytest.raises(SpiketandemError, match="Hardtanh"):
        build_student(bad, NeuronConfig(), torch.zeros(2, 4))
    with pytest.raises(SpiketandemError, match="act_clip must be > 0"):
        build_model("vgg11", act_clip=0.0)


def test_ann_activation_of_each_layer_reproduces_a_clipped_teacher():
    # rules that run layers as the ANN (PTL before a layer's stage) must use the teacher's own activation
    from spiketandem.rules.hybrid import run_hybrid
    teacher = warmed(build_model("digits-mlp", in_channels=1, image_size=8, act_clip=0.5), (1, 8, 8))
    x = torch.randn(4, 1, 8, 8)
    student = build_student(teacher, NeuronConfig("if"), x, calibration_images=torch.randn(32, 1, 8, 8))
    assert {layer.ceiling for layer in student.layers} == {0.5}
    with torch.no_grad():
        ann = run_hybrid(student, x, 1, {i.name: ("ann", i.ann_activation) for i in student.layers})
        relu = run_hybrid(student, x, 1, {i.name: ("ann", F.relu) for i in student.layers})
        expected = teacher(x)
    torch.testing.assert_close(ann, expected, rtol=1e-4, atol=1e-5)
    assert (relu - expected).abs().max() > 1e-2


class _FunctionalReLU6(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 16), nn.Linear(16, 2)

    def forward(self, x):
        return self.fc2(F.relu6(self.fc1(x)))


@pytest.mark.parametrize("make", [lambda: nn.Sequential(nn.Linear(4, 16), nn.ReLU6(), nn.Linear(16, 2)),
                                  _FunctionalReLU6], ids=["module", "function"])
def test_teacher_taps_record_relu6_as_the_teacher_computes_it(make):
    net = make()
    first = next(net.children())
    x = 10 * torch.randn(8, 4)  # large inputs: many pre-activations lie above 6
    with torch.no_grad():
        logits, acts = TeacherTaps(net, x)(x)
        expected = torch.clamp(first(x), 0, 6)
    assert float(expected.max()) == 6.0 and len(acts) == 1
    torch.testing.assert_close(acts[list(acts)[0]], expected)
    torch.testing.assert_close(logits, net(x))
