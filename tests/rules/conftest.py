"""Fixtures shared by the rule tests.

NOTE (tandem/ptl/convert/qat engineer): an earlier version of this file, holding ``direct_run``, was
overwritten by accident at 13:47; ``direct_run`` below is a reconstruction from how the tests use it
(digits, from scratch, T=4, a few epochs, summary + run_dir).  Its owner: please check its settings.
"""
import pytest
import torch

from spiketandem.config import make_config
from spiketandem.teachers import load_teacher
from spiketandem.workflow import calibration_images, prepare, train_student
from spiketandem.rules import configure, get_rule
from spiketandem.runs import RunFolder
from spiketandem.data.feeding import evaluation_batches
from spiketandem.train import evaluate, fit

DIGITS = dict(dataset="digits", arch="digits-cnn", device="cpu", progress=False)


@pytest.fixture
def direct_run(tmp_path):
    """run(rule, **fields) -> the summary (plus ``run_dir``) of a short digits run of a rule that
    trains from scratch, through the pipeline."""
    def run(rule, **fields):
        out = tmp_path / rule
        cfg = make_config({**DIGITS, "rule": rule, "T": 4, "eval_T": [4], "epochs": 4, "out": str(out), **fields})
        summary = train_student(cfg, RunFolder(out), log=lambda *a, **k: None)
        return {**summary, "run_dir": str(out)}
    return run


# ---- tandem / ptl / convert / qcfs / qat ---------------------------------------------------------


@pytest.fixture(scope="session")
def digits_data():
    """(ArrayDataset, DataInfo) of scikit-learn digits."""
    _, data, info, _ = prepare(make_config(DIGITS))
    return data, info


@pytest.fixture
def digits_rule(request, digits_data):
    """make(rule_name, **config_fields) -> (rule, cfg), built on digits with the session teacher
    (loaded fresh each time, so a rule may change it) and the first 512 training images as calibration."""
    data, info = digits_data

    def make(name, **fields):
        cfg = configure(make_config({**DIGITS, "rule": name, **fields}))
        teacher = None
        if get_rule(name).needs_teacher:  # the session teacher is trained only when a test needs it
            teacher = load_teacher(request.getfixturevalue("digits_teacher"), info)[0]
        torch.manual_seed(cfg.seed)
        return get_rule(name)(cfg, info, teacher, calibration_images(data, "cpu")), cfg
    return make


@pytest.fixture
def digits_batch(digits_data):
    """A fixed batch of 32 normalised test images and their labels."""
    data, _ = digits_data
    x, y = next(iter(evaluation_batches(data, make_config(DIGITS), "cpu")))
    return x[:32], y[:32]


@pytest.fixture
def fit_and_score(digits_data, tmp_path):
    """run(rule, cfg) trains the rule with the shared loop for cfg.epochs and returns its test
    accuracy at each window of cfg.eval_T; run(rule, cfg, before=True) returns (before, after)."""
    data, _ = digits_data

    def score(rule, cfg):
        return evaluate(rule, evaluation_batches(data, cfg, "cpu"), cfg.eval_T)

    def run(rule, cfg, before=False):
        start = score(rule, cfg) if before else None
        fit(rule, cfg, data, torch.device("cpu"), log=lambda *a, **k: None)
        return (start, score(rule, cfg)) if before else score(rule, cfg)
    return run
