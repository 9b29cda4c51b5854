"""ANN-to-SNN conversion: IF rates approach the clipped ANN activation within one step (half a step
with a half-threshold start), the network's output approaches the teacher's as T grows, percentile
100 is the maximum, and a run with no training goes through the whole pipeline."""
import pytest
import torch

from spiketandem.config import make_config
from spiketandem.errors import SpiketandemError
from spiketandem.neuron import RunContext
from spiketandem.teachers import load_teacher
from spiketandem.workflow import calibration_images, train_student
from spiketandem.rules.hybrid import membrane_start
from spiketandem.runs import RunFolder
from spiketandem.student import TeacherTaps


def first_layer(student, x, T, membrane=0.0):
    """(rate-coded output amplitude * C/T, clipped activation clamp(z, 0, s), s) of the first layer,
    whose input current z = conv1(x) is the same at every step."""
    ctx = RunContext(T=T, batch=x.shape[0], records={}, state_in=membrane_start(student, membrane))
    with torch.no_grad():
        student.run(x, ctx)
        z = student.graph_module.conv1(x)
    s = float(student.neurons["relu"].threshold)
    return student.neurons["relu"].amplitude * ctx.records["relu"].mean(0), z.clamp(0, s), s


@pytest.mark.parametrize("membrane, bound", [(0.0, 1.0), (0.5, 0.5)])
def test_if_rate_of_a_constant_current_is_within_one_step_of_the_clipped_activation(
        digits_rule, digits_batch, membrane, bound):
    """From U = 0 an IF neuron with constant input z fires floor(T z / s) times, from U = s/2
    round(T z / s) times: |amplitude * C/T - clamp(z, 0, s)| <= bound * s / T."""
    rule, _ = digits_rule("convert", neuron="if", epochs=0)
    x, _ = digits_batch
    errors = []
    for T in (4, 16, 64):
        rate, clipped, s = first_layer(rule.model, x, T, membrane)
        err = (rate - clipped).abs()
        assert float(err.max()) <= bound * s / T * (1 + 1e-5)
        errors.append(float(err.mean()))
    assert errors[0] > errors[1] > errors[2]


def test_network_output_approaches_the_teacher_as_T_grows(digits_rule, digits_batch, digits_teacher):
    rule, _ = digits_rule("convert", neuron="if", epochs=0, percentile=100.0)  # no clipping on calibration data
    teacher, _ = load_teacher(digits_teacher)
    x, _ = digits_batch
    with torch.no_grad():
        target = teacher(x)
    gaps = [float((rule.predict(x, T) - target).abs().mean() / target.abs().mean()) for T in (8, 32, 128)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.1
    assert (rule.predict(x, 128).argmax(1) == target.argmax(1)).float().mean() >= 0.95


def test_percentile_100_sets_each_threshold_to_the_largest_teacher_activation(digits_rule, digits_teacher,
                                                                              digits_data):
    rule, _ = digits_rule("convert", neuron="if", epochs=0, percentile=100.0)
    teacher, _ = load_teacher(digits_teacher)
    images = calibration_images(digits_data[0], "cpu")  # what the rule was calibrated on
    with torch.no_grad():
        _, acts = TeacherTaps(teacher, images)(images)
    for name, neuron in rule.model.neurons.items():
        assert float(neuron.threshold) == pytest.approx(float(acts[name].max()), rel=1e-4)
        assert float(neuron.amplitude) == float(neuron.threshold)


def test_convert_refuses_training_and_leaky_neurons(digits_rule):
    with pytest.raises(SpiketandemError, match="--epochs 0"):
        digits_rule("convert", neuron="if", epochs=1)
    with pytest.raises(SpiketandemError, match="--neuron if"):
        digits_rule("convert", neuron="lif", epochs=0)


def test_conversion_runs_through_the_pipeline_with_zero_epochs(tmp_path, digits_teacher):
    cfg = make_config({"dataset": "digits", "arch": "digits-cnn", "rule": "convert", "neuron": "if", "epochs": 0,
                       "T": 16, "eval_T": [16], "teacher": digits_teacher, "progress": False, "out": str(tmp_path)})
    summary = train_student(cfg, RunFolder(tmp_path), log=lambda *a, **k: None)
    assert summary["epochs"] == 0 and summary["train_seconds"] == 0
    assert summary["student_acc"] > 0.9  # measured 0.99 (teacher 0.99)
