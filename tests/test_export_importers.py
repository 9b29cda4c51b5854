"""Exported files in other simulators: Norse, snnTorch and SpikingJelly read the file and
reproduce the student's per-layer spike counts and accuracy; snnTorch reads IF students in the opt-in
"snntorch" flavour (IF as a LIF whose leak is exactly 1 in float32), checked for exactness; ResNet-20's
residual joins run in Norse and the reference simulator."""
import numpy as np
import pytest
import torch

from spiketandem.errors import SpiketandemError
from spiketandem.export import student_to_nir, verify_nir, write_nir
from spiketandem.export.nir_export import IF_AS_LIF_EXPONENT
from spiketandem.models import build_model
from spiketandem.neuron import NeuronConfig
from spiketandem.student import build_student

T = 12


def _student(arch="digits-cnn", kind="lif", seed=0, threshold_scale=1.0, tau_m=4.0):
    torch.manual_seed(seed)
    teacher = build_model(arch, 10, 1, 8, 0.25).eval()
    student = build_student(teacher, NeuronConfig(kind=kind, reset="zero", tau_m=tau_m), torch.zeros(2, 1, 8, 8),
                            calibration_images=torch.randn(64, 1, 8, 8), percentile=90).eval()
    for layer in student.neurons.values():
        layer.threshold.mul_(threshold_scale)
    return student


def _check(result, importers, n_layers):
    assert result["student_accuracy"] >= 0
    for name in importers:
        r = result["importers"][name]
        assert "error" not in r, f"{name}: {r.get('error')}"
        assert len(r["layers"]) == n_layers
        for node, layer in r["layers"].items():
            assert layer["spikes_student"] > 0, f"{node} is silent: the comparison would be vacuous"
            assert layer["identical"], f"{name} {node}: {layer['counts_differing']} counts differ"
        assert r["spike_counts_identical"]
        assert r["accuracy"] == result["student_accuracy"] and r["agreement_with_student"] == 1.0
        assert r["max_output_difference"] < 1e-4


@pytest.mark.parametrize("kind", ["lif", "if"])
def test_three_importers_and_the_reference_reproduce_a_cnn(tmp_path, kind):
    student = _student(kind=kind)
    path = write_nir(student, tmp_path / "s.nir")
    x, y = torch.randn(5, 1, 8, 8), torch.randint(0, 10, (5,))
    result = verify_nir(path, student, x, y, T)
    if kind == "lif":
        _check(result, ("reference", "norse", "snntorch", "spikingjelly"), 3)
        assert result["importers"]["norse"]["loader"] == "norse.torch.from_nir"
    else:  # snnTorch 1.0 refuses IF nodes with r = 1/dt: reported, not raised
        _check(result, ("reference", "norse", "spikingjelly"), 3)
        assert "r != 1 not supported" in result["importers"]["snntorch"]["error"]


def test_snntorch_flavour_makes_if_students_exact_in_snntorch(tmp_path):
    student = _student(kind="if", seed=1)
    path = write_nir(student, tmp_path / "s.nir", flavour="snntorch")
    x, y = torch.randn(5, 1, 8, 8), torch.randint(0, 10, (5,))
    _check(verify_nir(path, student, x, y, T), ("reference", "norse", "snntorch", "spikingjelly"), 3)


def test_if_as_lif_parameters_are_exact_in_float32():
    """The snntorch flavour's IF node, by hand: snnTorch computes beta = 1 - dt/tau and threshold v_th / (r dt/tau)
    in float32; both must come out as exactly 1 and our threshold's float32 predecessor."""
    student = _student(kind="if")
    theta = float(student.neurons[student.layers[0].name].threshold)
    g = student_to_nir(student, flavour="snntorch")
    lif = g.nodes["lif1"]
    dt = np.float32(1e-4)
    beta = np.float32(1) - dt / lif.tau
    w_scale = lif.r * dt / lif.tau
    assert np.all(beta == np.float32(1.0)) and np.all(w_scale == np.float32(2.0 ** -IF_AS_LIF_EXPONENT))
    below = np.nextafter(np.float32(theta), np.float32(-np.inf))
    assert np.all(lif.v_threshold / w_scale == below)
    # and in float64, the leak over 2^16 steps stays below float32 resolution
    assert (1 - 1e-4 / float(lif.tau.flat[0])) ** 65536 > 1 - 2.0 ** -24
    assert g.metadata["flavour"] == "snntorch"


def test_lif_parameters_are_exact_for_snntorch():
    """Default flavour LIF: tau is chosen so that snnTorch's float32 beta = 1 - dt/tau is exactly our leak, and
    v_threshold so that its v_th / (r dt / tau) is exactly our threshold's float32 predecessor."""
    student = _student(kind="lif", tau_m=3.0)
    neuron = student.neurons[student.layers[1].name]
    lif = student_to_nir(student).nodes["lif2"]
    dt = np.float32(1e-4)
    assert np.all(np.float32(1) - dt / lif.tau == np.float32(neuron.alpha))
    below = np.nextafter(np.float32(neuron.threshold), np.float32(-np.inf))
    assert np.all(lif.v_threshold / (lif.r * dt / lif.tau) == below)


def test_snntorch_flavour_needs_snntorchs_step():
    with pytest.raises(SpiketandemError, match="dt = 0.0001.*drop --dt"):
        student_to_nir(_student(kind="if"), dt=1e-3, flavour="snntorch")


def test_resnet20_runs_in_norse_and_the_reference(tmp_path):
    student = _student("resnet20", kind="if", threshold_scale=0.6)
    path = write_nir(student, tmp_path / "r.nir")
    torch.manual_seed(3)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    result = verify_nir(path, student, x, y, 16, importers=("reference", "norse", "spikingjelly"))
    _check(result, ("reference", "norse", "spikingjelly"), 19)
    # Norse's from_nir executor runs a multi-input node before all its inputs: Norse's node map via nirtorch
    assert result["importers"]["norse"]["loader"].startswith("nirtorch.nir_to_torch with Norse's node mapping")


def test_a_missing_importer_is_reported_not_raised(tmp_path, monkeypatch):
    import spiketandem.export.verify as verify

    def absent(*args, **kwargs):
        raise ImportError("No module named 'norse'")
    monkeypatch.setitem(verify.RUNNERS, "norse", absent)
    student = _student()
    path = write_nir(student, tmp_path / "s.nir")
    result = verify_nir(path, student, torch.randn(2, 1, 8, 8), torch.zeros(2, dtype=torch.long), 4,
                        importers=("reference", "norse"))
    assert result["importers"]["norse"]["available"] is False
    assert "error" not in result["importers"]["reference"]
