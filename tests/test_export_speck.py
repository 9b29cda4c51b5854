"""`export --target speck`: the student mapped onto SynSense Speck through sinabs' DYNAP-CNN backend."""
import json
import math
import sys

import pytest
import torch

from spiketandem.cli import main
from spiketandem.errors import SpiketandemError
from spiketandem.export.speck import (chip_layers, discretization_scale, discretized_network, integer_layers,
                                      load_speck_network, resources, sinabs_sequence)
from spiketandem.export.speck_backend import dynapcnn_backend, samna_status
from spiketandem.export.speck_verify import integer_forward, rate_events, sinabs_forward
from spiketandem.models import build_model
from spiketandem.neuron import NeuronConfig, RunContext
from spiketandem.student import build_student

T = 6


def _student(width=0.25, encoding="rate", kind="if", seed=0):
    torch.manual_seed(seed)
    teacher = build_model("digits-cnn", 10, 1, 8, width).eval()
    return build_student(teacher, NeuronConfig(kind=kind, reset="subtract"), torch.zeros(2, 1, 8, 8),
                         encoding=encoding, calibration_images=torch.randn(64, 1, 8, 8)).eval()


def _events(n=5, seed=1):
    x = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    return x, rate_events(x, T, seed)


def test_backend_loads_without_samna_and_samna_is_never_imported():
    backend, status = dynapcnn_backend()
    assert backend.DynapcnnNetwork.__name__ == "DynapcnnNetwork"
    assert "samna" not in sys.modules                       # nobody else is handed the stand-in
    if not status["usable"]:
        from sinabs.backend.dynapcnn import dynapcnn_network
        with pytest.raises(SpiketandemError, match="samna"):
            dynapcnn_network.samna.graph.EventFilterGraph()


def test_pypi_installer_shim_is_recognised_without_importing_it(tmp_path, monkeypatch):
    pkg = tmp_path / "samna"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("PYPI_SAMNA = True\nraise SystemExit('the installer ran')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    status = samna_status()
    assert not status["usable"] and "installer shim" in status["why"] and "--index-url" in status["why"]
    assert "samna" not in sys.modules


def test_memory_and_cores_match_the_published_formula_and_limits():
    student = _student()
    layers = chip_layers(student, 2.0, 1.0)
    net = discretized_network(layers, T)
    report = resources(net, [layer.where for layer in layers])
    assert report["cores"] == 9
    cores = [r["core"] for r in report["layers"]]
    assert len(set(cores)) == len(cores)
    for row, (_, layer) in zip(report["layers"], sorted(net.dynapcnn_layers.items())):
        f, c, kh, kw = layer.conv_layer.weight.shape
        _, h, w = layer.get_neuron_shape()
        assert row["kernel"] == c * 2 ** (math.ceil(math.log2(kh * kw)) + math.ceil(math.log2(f)))
        assert row["neuron"] == f * 2 ** (math.ceil(math.log2(h)) + math.ceil(math.log2(w)))
        assert row["kernel"] <= row["kernel_limit"] and row["neuron"] <= row["neuron_limit"]
    # Speck's core 5 has 64 Ki kernel entries and 16 Ki neurons (sinabs' constraints)
    assert sum(r["kernel_limit"] for r in report["layers"]) >= sum(r["kernel"] for r in report["layers"])


def test_a_student_too_large_for_the_chip_is_refused_in_one_line_naming_the_layer():
    student = _student(width=1.0)       # fc1: 64 channels x 4x4 -> 128: 64 * 2^(4+7) = 131072 > 65536
    layers = chip_layers(student, 2.0, 1.0)
    net = discretized_network(layers, T)
    with pytest.raises(SpiketandemError) as e:
        resources(net, [layer.where for layer in layers])
    msg = str(e.value)
    assert "\n" not in msg and "relu_2" in msg and "131072" in msg and "65536" in msg and "--width" in msg


def test_analog_input_and_leaky_neurons_are_refused_with_the_fix():
    with pytest.raises(SpiketandemError, match="--encoding rate"):
        chip_layers(_student(encoding="analog"), None, 1.0)
    with pytest.raises(SpiketandemError, match="--neuron if"):
        chip_layers(_student(kind="lif"), 2.0, 1.0)


@pytest.mark.parametrize("start", [0.0, 0.5])
def test_float_chip_network_computes_the_students_readout_from_the_same_spikes(start):
    """The conversion (folded amplitudes, sum pooling, ON/OFF input channels, starting membranes) against the
    student's own forward: the readout current per step of the undiscretized sinabs network equals the student's
    logits per step."""
    student = _student()
    student.set_membrane_init(start)
    x, events = _events()
    peak = float(x.abs().flatten(1).amax(1).max())
    spikes = (events[:, :, :1] - events[:, :, 1:]) * peak           # [B, T, 1, H, W], the student's input form
    student.encode = lambda images, steps: spikes.transpose(0, 1).flatten(0, 1).float()
    with torch.no_grad():
        logits = student.run(x, RunContext(T=T, batch=x.shape[0]))   # [T, B, 10]
    backend, _ = dynapcnn_backend()
    layers = chip_layers(student, peak, 1e9)                          # readout never spikes: v = sum of currents
    net = backend.DynapcnnNetwork(sinabs_sequence(layers, T), input_shape=layers[0].in_shape, discretize=False)
    readout = sorted(net.dynapcnn_layers.items())[-1][1]
    seen = []
    hook = readout.conv_layer.register_forward_hook(lambda m, a, out: seen.append(out.detach()))
    sinabs_forward(net, events, [layer.start for layer in layers])
    hook.remove()
    assert (layers[0].start > 0) == (start > 0)
    current = seen[0].reshape(x.shape[0], T, 10).transpose(0, 1)
    assert torch.allclose(current, logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("spike_fn", ["single", "multi"])
@pytest.mark.parametrize("start", [0.0, 0.5])
def test_integer_simulation_gives_sinabs_spike_counts_exactly(spike_fn, start):
    student = _student(seed=2)
    student.set_membrane_init(start)
    x, events = _events(n=8, seed=3)
    layers = chip_layers(student, float(x.abs().amax()), 0.5)
    net = discretized_network(layers, T, spike_fn)
    ints = integer_layers(net)
    for p in ints:   # the chip's precisions: 8-bit weights and biases, 16-bit thresholds, integers
        assert torch.equal(p["weight"], p["weight"].round()) and -128 <= p["weight"].min() <= p["weight"].max() <= 127
        assert -128 <= p["bias"].min() <= p["bias"].max() <= 127 and 0 < p["threshold"] < 2 ** 15
    for layer, p in zip(layers, ints):   # the scale sinabs used: threshold and weights scaled alike, then rounded
        scale = discretization_scale(layer)
        assert p["threshold"] == round(layer.threshold * scale) and p["v_min"] == -2 ** 15
        assert torch.equal(p["bias"], torch.round(layer.bias.float() * scale).double())
    starts = [round(layer.start * discretization_scale(layer)) for layer in layers]
    assert (max(starts) > 0) == (start > 0)
    ours, theirs = integer_forward(ints, events, spike_fn, starts), sinabs_forward(net, events, starts)
    for a, b in zip(ours, theirs):
        assert a.sum() > 0                      # every layer spikes: the comparison can fail
        assert torch.equal(a, b)


def test_integer_simulation_against_a_hand_example():
    """One 1x1 synapse, weight 3, bias 0, threshold 5, one input event per step: v = 3, 6->1 (spike), 4, 7->2
    (spike), 5->0 (spike); multi: the same here.  A negative weight stops at the floor v_min = -4."""
    layer = {"weight": torch.tensor([[[[3.0]]]], dtype=torch.float64), "bias": torch.zeros(1, dtype=torch.float64),
             "stride": (1, 1), "padding": (0, 0), "threshold": 5.0, "v_min": -4.0, "reset": "subtract", "pool": 1}
    events = torch.ones(1, 5, 1, 1, 1)
    highest = []
    assert integer_forward([layer], events, highest=highest)[0].item() == 3
    assert highest == [7.0]                       # the membrane before the second spike
    neg = dict(layer, weight=-layer["weight"], bias=torch.tensor([6.0], dtype=torch.float64))
    # v: -3+6 = 3, 6 -> spike -> 1, 4, 7 -> spike -> 2, 5 -> spike -> 0
    assert integer_forward([neg], events)[0].item() == 3
    floor = dict(layer, weight=-layer["weight"])
    two = dict(layer, weight=torch.tensor([[[[-1.0]]]], dtype=torch.float64), bias=torch.tensor([4.0], dtype=torch.float64))
    # first layer never spikes (v floors at -4); second: 4 per step -> 4, 8->3 (1), 7->2 (2), 6->1 (3), 5->0 (4)
    assert integer_forward([floor, two], events)[1].item() == 4
    multi = dict(layer, weight=torch.tensor([[[[12.0]]]], dtype=torch.float64))
    # multi: v = 12 -> 2 spikes, 2; 14 -> 2, 4; ... single: 12 -> 1, 7 -> ..., at most one a step
    assert integer_forward([multi], events[:, :2], "multi")[0].item() == 4
    assert integer_forward([multi], events[:, :2], "single")[0].item() == 2


@pytest.fixture(scope="module")
def chip_run(tmp_path_factory):
    """A digits student trained for the chip: IF neurons, rate-encoded input, half width (fits Speck's cores)."""
    run = tmp_path_factory.mktemp("speck-run") / "run"
    assert main(["train", "--dataset", "digits", "--neuron", "if", "--encoding", "rate", "--width", "0.5",
                 "--epochs", "3", "--teacher-epochs", "15", "--T", "16", "--out", str(run), "--quiet"]) == 0
    return run


def test_digits_student_on_speck_within_a_point_and_integer_exact(chip_run, tmp_path):
    out = tmp_path / "speck"
    assert main(["export", str(chip_run), str(out), "--target", "speck", "--quiet"]) == 0
    report = json.loads((out / "speck.json").read_text())
    acc = report["accuracy"]
    assert acc["float_student"]["test"] > 0.9
    for split in ("test", "held_out"):
        assert abs(acc["discretized_single_spike"][split] - acc["float_student"][split]) <= 0.01 + 1e-9
    assert all(r["identical"] for rows in report["verify"].values() for r in rows)
    assert [r["core"] for r in report["resources"]["layers"]] and report["input"]["encoding"] == "rate"
    saved = torch.load(out / "speck_network.pt", weights_only=True)
    assert len(saved["layers"]) == len(report["resources"]["layers"]) == 4
    # the file rebuilt for sinabs computes the integer network that was verified
    net = load_speck_network(out)
    x, _ = _events(n=6, seed=7)
    events = rate_events(x, 16, 7)
    ours, theirs = integer_forward(saved["layers"], events), sinabs_forward(net, events)
    assert theirs[0].sum() > 0 and all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert [int(lyr.spk_layer.spike_threshold) for _, lyr in sorted(net.dynapcnn_layers.items())] == \
        [r["threshold"] for r in report["integer_layers"]]


def test_target_speck_refuses_retargeting_flags(chip_run, tmp_path):
    assert main(["export", str(chip_run), str(tmp_path / "o"), "--target", "speck", "--retarget", "zero-reset"]) == 2
    assert not (tmp_path / "o").exists()


def test_event_frames_reach_the_chip_as_they_are_and_give_the_students_readout():
    """An event-data student (--encoding frames): the frames' counts are the chip's events, no polarity split;
    the float chip network's readout current per step equals the student's logits, and the integer simulation
    gives sinabs' spike counts."""
    torch.manual_seed(4)
    teacher = build_model("digits-cnn", 10, 2, 16, 0.25).eval()
    student = build_student(teacher, NeuronConfig(kind="if", reset="subtract"), torch.zeros(2, 2, 16, 16),
                            encoding="frames", calibration_images=torch.rand(64, 2, 16, 16) * 3).eval()
    frames = torch.poisson(torch.full((4, T, 2, 16, 16), 2.0), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        logits = student.run(frames, RunContext(T=T, batch=4))
    backend, _ = dynapcnn_backend()
    layers = chip_layers(student, None, 1e9)
    assert layers[0].in_shape == (2, 16, 16) and layers[0].weight.shape[1] == 2
    net = backend.DynapcnnNetwork(sinabs_sequence(layers, T), input_shape=layers[0].in_shape, discretize=False)
    seen = []
    readout = sorted(net.dynapcnn_layers.items())[-1][1]
    hook = readout.conv_layer.register_forward_hook(lambda m, a, out: seen.append(out.detach()))
    with torch.no_grad():
        net(frames.flatten(0, 1))
    hook.remove()
    assert torch.allclose(seen[0].reshape(4, T, 10).transpose(0, 1), logits, atol=1e-4, rtol=1e-4)
    layers = chip_layers(student, None, 0.5)
    net = discretized_network(layers, T)
    ours, theirs = integer_forward(integer_layers(net), frames), sinabs_forward(net, frames)
    assert all(a.sum() > 0 and torch.equal(a, b) for a, b in zip(ours, theirs))


def test_an_nmnist_student_through_the_same_path(tmp_path, monkeypatch):
    """A student trained on N-MNIST-format recordings (synthetic: each digit fires in its own cell of a 4 x 4
    grid on the 34 x 34 sensor), pooled to 16 x 16 frames, exported with --target speck."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("event_builders", Path(__file__).parent / "data" / "event_builders.py")
    builders = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builders)
    builders.write_synthetic_nmnist(tmp_path / "data" / "NMNIST", {"Train": 20, "Test": 6}, (150, 300))
    monkeypatch.setenv("SPIKETANDEM_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    assert main(["train", "--dataset", "nmnist", "--data-dir", str(tmp_path / "data"), "--encoding", "frames",
                 "--neuron", "if", "--arch", "digits-cnn", "--width", "0.25", "--event-size", "16", "--T", "8",
                 "--epochs", "3", "--teacher-epochs", "5", "--out", str(run), "--quiet"]) == 0
    out = tmp_path / "speck"
    assert main(["export", str(run), str(out), "--target", "speck", "--quiet"]) == 0
    report = json.loads((out / "speck.json").read_text())
    assert report["input"]["encoding"] == "frames" and len(report["resources"]["layers"]) == 4
    assert all(r["identical"] and r["spikes_sinabs"] > 0 for rows in report["verify"].values() for r in rows)
    acc = report["accuracy"]
    assert abs(acc["discretized_single_spike"]["test"] - acc["float_student"]["test"]) <= 0.05


def test_the_chip_grid_in_the_loop_gives_the_integers_sinabs_maps():
    """Every mapped weight and bias read through the chip's grid (speck_calibrate.put_on_grid) is s^-1 times the
    integer sinabs' discretization gives the same student (its own scale and rounding, computed by sinabs from the
    untouched student), and the student with the grid made permanent maps to those very integers and thresholds."""
    from spiketandem.export.speck_calibrate import chip_grid, chip_integers, put_on_grid, take_off_grid
    student = _student(seed=2)
    student.set_membrane_init(0.5)
    x, events = _events(n=8, seed=3)
    peak = float(x.abs().amax())
    reference = integer_layers(discretized_network(chip_layers(student, peak, 0.5), T))   # sinabs, untouched
    grid = chip_grid(student, peak, 0.5)
    put_on_grid(student, grid)
    for layer, p in zip(grid, reference):
        wi, bi, s = chip_integers(layer)
        w_int = torch.cat([wi, -wi], 1) if layer.on_off else wi
        assert torch.equal(w_int.reshape(p["weight"].shape), p["weight"])
        assert torch.equal(bi, p["bias"])
        # the scale puts the largest folded weight or bias on the edge of the 8-bit grid
        assert max(float(w_int.max()), float(bi.max())) == 127 or min(float(w_int.min()), float(bi.min())) == -128
        # the forward pass sees exactly integer / s: the grid is in the loop
        seen = layer.module.weight.detach().double() * layer.weight_factor * s
        assert (seen - wi).abs().max() < 1e-3 < (layer.module.parametrizations.weight.original.double()
                                                  * layer.weight_factor * s - wi).abs().max()
    take_off_grid(student, grid)
    layers = chip_layers(student, peak, 0.5)
    ints = integer_layers(discretized_network(layers, T))
    for p, q, layer in zip(ints, reference, layers):
        assert torch.equal(p["weight"], q["weight"]) and torch.equal(p["bias"], q["bias"])
        assert p["threshold"] == q["threshold"]
        if layer.where != "readout":     # hidden thresholds on the 16-bit grid (the export picks the readout's)
            assert layer.threshold * discretization_scale(layer) == pytest.approx(p["threshold"], abs=1e-3)
    ours, theirs = integer_forward(ints, events, "single", [0] * len(ints)), sinabs_forward(
        discretized_network(layers, T), events)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_the_chip_grid_passes_gradients_straight_through():
    from spiketandem.export.speck_calibrate import chip_grid, put_on_grid
    student = _student(seed=5)
    grid = chip_grid(student, 2.0, 1.0)
    put_on_grid(student, grid)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    torch.manual_seed(0)
    student.train()
    student(x, T).sum().backward()
    for layer in grid:
        shadow = layer.module.parametrizations.weight.original
        assert shadow.grad is not None and shadow.grad.abs().sum() > 0


@pytest.mark.parametrize("flags, words", [
    (["--weight-bits", "4"], ["8-bit", "--weight-bits 8"]),
    (["--weight-bits", "8", "--weight-quant", "minmax"], ["--weight-quant minmax"]),
    (["--calibrate-epochs", "2"], ["--weight-bits 8"]),
    (["--weight-bits", "8", "--calibrate-epochs", "-1"], [">= 0"]),
])
def test_target_speck_refuses_bad_calibration_flags_in_one_line(chip_run, tmp_path, capsys, flags, words):
    out = tmp_path / "o"
    assert main(["export", str(chip_run), str(out), "--target", "speck", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and all(w in err for w in words) and not out.exists()


def test_calibration_on_the_chip_grid_reports_before_and_after_and_does_not_lose_held_out_accuracy(chip_run,
                                                                                                     tmp_path):
    plain, out = tmp_path / "plain", tmp_path / "cal"
    assert main(["export", str(chip_run), str(plain), "--target", "speck", "--quiet"]) == 0
    assert main(["export", str(chip_run), str(out), "--target", "speck", "--weight-bits", "8",
                 "--calibrate-epochs", "1", "--quiet"]) == 0
    before = json.loads((plain / "speck.json").read_text())["accuracy"]
    report = json.loads((out / "speck.json").read_text())
    cal = report["calibration"]
    # "before" is the plain export, "after" the network written
    assert cal["before"]["discretized_single_spike"] == before["discretized_single_spike"]
    assert cal["after"]["discretized_single_spike"] == report["accuracy"]["discretized_single_spike"]
    assert cal["chosen_epoch"] in (0, 1) and len(cal["history"]) == 1
    n = report["accuracy"]["held_out_images"]
    assert (cal["after"]["discretized_single_spike"]["held_out"]
            >= cal["before"]["discretized_single_spike"]["held_out"] - 2 / n)
    assert all(r["identical"] for rows in report["verify"].values() for r in rows)
    saved = torch.load(out / "speck_network.pt", weights_only=True)
    assert [int(p["threshold"]) for p in saved["layers"]] == [r["threshold"] for r in report["integer_layers"]]
