"""Config validation, YAML loading and flag overrides: every bad value names its field."""
import pytest

from spiketandem.config import load_yaml, make_config
from spiketandem.errors import SpiketandemError


def test_defaults_follow_the_paper():
    cfg = make_config()
    assert (cfg.rule, cfg.neuron, cfg.reset, cfg.surrogate, cfg.percentile, cfg.bptt) == (
        "ltl-offline", "lif", "subtract", "boxcar", 99.9, "full")
    assert cfg.neuron_config().surrogate.param == 1.0


@pytest.mark.parametrize("field,value,needle", [
    ("neuron", "izhikevich", "'neuron'.*if, lif"),
    ("reset", "hard", "'reset'.*subtract, zero"),
    ("T", 0, "'T' must be a positive"),
    ("epochs", -1, "'epochs' must be a non-negative"),
    ("percentile", 101, "'percentile'"),
    ("eval_T", [4, 0], "'eval_T'"),
    ("ynorm", "ema", "'ynorm'.*batch, running, fixed"),
    ("act_clip", 0, "'act_clip' must be a positive"),
    ("act_clip", "two", "'act_clip' must be a positive"),
])
def test_bad_values_name_the_field_and_the_allowed_values(field, value, needle):
    with pytest.raises(SpiketandemError, match=needle):
        make_config({field: value})


def test_unknown_field_lists_valid_ones():
    with pytest.raises(SpiketandemError, match="unknown config field.*epoch.*valid fields.*epochs"):
        make_config({"epoch": 3})


def test_yaml_then_flags_override(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("dataset: digits\nT: 8\nbatch-size: 32\neval_T: [2, 4]\n")
    cfg = make_config(load_yaml(path), {"T": 12, "epochs": None})
    assert (cfg.T, cfg.batch_size, cfg.eval_T, cfg.epochs) == (12, 32, [2, 4], 5)


def test_bad_yaml_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("T: [1, 2\n")
    with pytest.raises(SpiketandemError, match="not valid YAML"):
        load_yaml(path)
    path.write_text("- a\n- b\n")
    with pytest.raises(SpiketandemError, match="mapping"):
        load_yaml(path)
    with pytest.raises(SpiketandemError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")
