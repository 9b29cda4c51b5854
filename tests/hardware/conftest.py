"""A trained digits run for the hardware tests: offline LTL, LIF, T=4, one epoch, from the session teacher."""
import pytest

from spiketandem.config import make_config
from spiketandem.workflow import calibration_images, load_run, prepare, train_student
from spiketandem.runs import RunFolder


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory, digits_teacher) -> str:
    out = tmp_path_factory.mktemp("hardware-run")
    cfg = make_config({"dataset": "digits", "arch": "digits-cnn", "teacher": digits_teacher, "T": 4, "eval_T": [4],
                       "epochs": 1, "device": "cpu", "progress": False, "out": str(out)})
    train_student(cfg, RunFolder(out), log=lambda *a, **k: None)
    return str(out)


@pytest.fixture(scope="session")
def loaded_run(digits_run):
    """(cfg, trained rule, info, device, data, calibration images) of the digits run."""
    cfg, rule, info, dev = load_run(digits_run, "cpu")
    cfg, data, _, _ = prepare(cfg)
    return cfg, rule, info, dev, data, calibration_images(data, dev)
