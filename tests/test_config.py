"""Config validation, YAML loading and flag overrides: every bad value names its field."""
import pytest

from spiketandem.config import load_yaml, make_config
from spiketandem.errors import SpiketandemError
from spiketandem.neuron import NeuronConfig
from spiketandem.rules import LTLOffline, configure
from spiketandem.surrogate import Surrogate


def test_defaults_follow_the_paper():
    cfg = make_config()
    assert (cfg.rule, cfg.neuron, cfg.reset, cfg.surrogate, cfg.percentile) == (
        "ltl-offline", "lif", "subtract", "boxcar", 99.9)
    assert {o.name: o.default for o in LTLOffline.options if o.name in ("bptt", "ynorm", "schedule")} == {
        "bptt": "full", "ynorm": "batch", "schedule": "parallel"}
    assert cfg.neuron_config().surrogate.param == 1.0


@pytest.mark.parametrize("options,needle", [
    ({"ynorm": "ema"}, "--ynorm.*one of batch, running, fixed"),
    ({"kd": -1}, "--kd.*>= 0.0"),
    ({"kd_temperature": 0}, "--kd-temperature.*> 0.0"),
    ({"schedule": "backwards"}, "--schedule.*parallel, sequential"),
    ({"tet_lambda": 0.5}, "--tet-lambda.*applies to rule\\(s\\) tet, not to ltl-offline"),
    ({"lrr": 0.1}, "unknown config field or option 'lrr'.*config fields.*\\blr\\b"),
])
def test_rule_options_are_checked_against_the_rule(options, needle):
    with pytest.raises(SpiketandemError, match=needle):
        configure(make_config(options))


@pytest.mark.parametrize("rule,options,needle", [
    ("tet", {"tet_lambda": 2.0}, "--tet-lambda.*<= 1.0"),
    ("ptl", {"ptl_patience": 0}, "--ptl-patience.*>= 1"),
    ("ptl", {"ptl_val_fraction": 1.0}, "--ptl-val-fraction.*< 1.0"),
    ("stbp", {"voting": 1.5}, "--voting.*an integer >= 0"),
    ("stbp", {"init_rate": float("nan")}, "--init-rate"),
    ("ltl-online", {"schedule": "sequential"}, "applies to rule\\(s\\) ltl-offline"),
    ("ltl-online", {"onchip_gate": "yes"}, "--onchip-gate.*true or false"),
])
def test_option_ranges_and_types(rule, options, needle):
    with pytest.raises(SpiketandemError, match=needle):
        configure(make_config({"rule": rule, **options}))


def test_valid_options_are_converted_to_their_type():
    cfg = configure(make_config({"rule": "tet", "tet_lambda": 1, "options": {"tet_phi": 0.5}}))
    assert cfg.options == {"tet_lambda": 1.0, "tet_phi": 0.5}
    assert isinstance(cfg.options["tet_lambda"], float)


def test_neuron_config_takes_a_surrogate_name_or_refuses_at_construction():
    assert NeuronConfig(surrogate="atan").surrogate == Surrogate("atan")
    with pytest.raises(SpiketandemError, match="unknown surrogate 'magic'"):
        NeuronConfig(surrogate="magic")
    with pytest.raises(SpiketandemError, match="surrogate must be a Surrogate"):
        NeuronConfig(surrogate=3)


def test_replace_can_unset_a_field():
    cfg = make_config({"lr": 0.5, "optimizer": "sgd"})
    assert (cfg.replace(lr=None, optimizer=None).lr, cfg.replace(lr=None, optimizer=None).optimizer) == (None, None)


@pytest.mark.parametrize("field,value,needle", [
    ("neuron", "izhikevich", "'neuron'.*if, lif"),
    ("reset", "hard", "'reset'.*subtract, zero"),
    ("T", 0, "'T' must be a positive"),
    ("epochs", -1, "'epochs' must be a non-negative"),
    ("percentile", 101, "'percentile'"),
    ("eval_T", [4, 0], "'eval_T'"),
    ("act_clip", 0, "'act_clip' must be a positive"),
    ("act_clip", "two", "'act_clip' must be a positive"),
])
def test_bad_values_name_the_field_and_the_allowed_values(field, value, needle):
    with pytest.raises(SpiketandemError, match=needle):
        make_config({field: value})


def test_unknown_field_lists_valid_ones():
    with pytest.raises(SpiketandemError, match="unknown config field.*epoch.*config fields.*epochs"):
        configure(make_config({"epoch": 3}))


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
