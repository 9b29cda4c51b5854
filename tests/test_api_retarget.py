"""The Python API has the CLI's export preparation (``api.retarget``: reset to zero, k-bit weights, through
``export.retarget``) and evaluates a built-in dataset (its test split, normalised as the training loop does)."""
import pytest
import torch

import spiketandem
from spiketandem import api
from spiketandem.config import make_config
from spiketandem.data import load_dataset
from spiketandem.data.feeding import evaluation_batches
from spiketandem.errors import SpiketandemError
from spiketandem.teachers import load_teacher

T = 4


@pytest.fixture(scope="module")
def trained(digits_teacher):
    """A digits teacher, a subset of the built-in digits, and an offline-LTL student trained on it (1 epoch)."""
    teacher = load_teacher(digits_teacher)[0]
    data = load_dataset("digits").subset(256, 128, seed=0)
    history = []
    student = api.train_ltl(teacher, data, T=T, epochs=1, history=history)
    return teacher, data, student, history


def _loop_tensors(data, split="test"):
    """The images and labels of a split, in order, exactly as the training loop evaluates them."""
    batches = list(evaluation_batches(data, make_config({"batch_size": 64}), "cpu", split=split))
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def test_evaluation_takes_a_builtin_dataset_as_the_training_loop_does(trained):
    teacher, data, student, history = trained
    images, labels = _loop_tensors(data)
    on_dataset = api.accuracy(student, data, T=T)
    assert on_dataset == api.accuracy(student, images, labels, T=T) == history[-1]["test_acc"]
    assert torch.equal(api.predict(student, data, T=T), api.predict(student, images, T=T))
    assert api.synops_ratio(student, teacher, data, T=T) == pytest.approx(
        api.synops_ratio(student, teacher, images, T=T))
    assert api.accuracy(teacher, data) == api.accuracy(teacher, images, labels)  # the ANN too
    with pytest.raises(SpiketandemError, match="carries its own labels"):
        api.accuracy(student, data, labels, T=T)


def test_retarget_to_zero_reset_gives_a_student_nir_takes(trained, tmp_path):
    teacher, data, student, _ = trained
    before = api.accuracy(student, data, T=T)
    new, report = api.retarget(student, teacher, data, epochs=1)
    assert {n.config.reset for n in new.neurons.values()} == {"zero"}
    assert set(new.membrane_inits().values()) == {0.0}
    assert {n.config.reset for n in student.neurons.values()} == {"subtract"}  # the given student is unchanged
    assert api.accuracy(student, data, T=T) == before == report["retarget"]["accuracy_subtract_reset"]
    assert report["retarget"]["accuracy_after"] == api.accuracy(new, data, T=T)
    api.save_student(new, tmp_path / "zero.pt")
    again = spiketandem.load_student(tmp_path / "zero.pt", teacher=teacher)
    assert api.accuracy(again, data, T=T) == report["retarget"]["accuracy_after"]
    pytest.importorskip("nir")
    assert api.export_nir(new, tmp_path / "zero.nir").is_file()
    assert api.retarget(new, teacher, data)[1]["retarget"]["note"].endswith("nothing to do")


def test_retarget_to_k_bit_weights(trained, tmp_path):
    teacher, data, student, _ = trained
    quantized, report = api.retarget(student, teacher, data, to=None, weight_bits=4, epochs=0)
    assert "retarget" not in report and report["weight_quantization"]["bits"] == 4
    weight = quantized.graph_module.get_submodule(
        next(n for n, m in quantized.graph_module.named_modules() if isinstance(m, torch.nn.Conv2d))).weight
    assert len(torch.unique(weight)) <= 2 ** 4
    assert report["weight_quantization"]["accuracy_after"] == api.accuracy(quantized, data, T=T)
    api.save_student(quantized, tmp_path / "q.pt")
    again = spiketandem.load_student(tmp_path / "q.pt", teacher=teacher)
    assert api.accuracy(again, data, T=T) == report["weight_quantization"]["accuracy_after"]


def test_retarget_takes_the_callers_tensors(trained):
    teacher, data, student, _ = trained
    images, labels = _loop_tensors(data)
    new, report = api.retarget(student, teacher, *_loop_tensors(data, "train"), test=(images, labels), epochs=0)
    assert report["retarget"]["test_images"] == len(labels)
    assert report["retarget"]["accuracy_after"] == api.accuracy(new, images, labels, T=T)


@pytest.mark.parametrize("call,words", [
    (lambda s, t, d, x, y: api.retarget(s, t, d, to="one-reset"), "is not one of 'zero-reset'"),
    (lambda s, t, d, x, y: api.retarget(s, t, d, to=None), "nothing to do"),
    (lambda s, t, d, x, y: api.retarget(s, t, x, y), "pass test="),
    (lambda s, t, d, x, y: api.retarget(s, t, x.repeat(1, 3, 1, 1), y, test=(x.repeat(1, 3, 1, 1), y)),
     "do not fit the student"),
    (lambda s, t, d, x, y: api.retarget(torch.nn.Linear(2, 2), t, d), "returned"),
    (lambda s, t, d, x, y: api.retarget(s, None, d), "pass the trained teacher"),
], ids=["unknown-target", "nothing", "no-test-split", "other-shape", "no-record", "no-teacher"])
def test_retarget_refuses_bad_input_in_one_line(trained, call, words):
    teacher, data, student, _ = trained
    images, labels = _loop_tensors(data)
    with pytest.raises(SpiketandemError, match=words) as caught:
        call(student, teacher, data, images, labels)
    assert "\n" not in str(caught.value)
