"""The torch-free declarations the command line is built from (``choices.py``, ``rules/catalog.py``) agree
with the modules that implement them, so the help and the checks can never offer what does not run."""
import types

import pytest
import torch

from spiketandem import choices


def test_each_choice_list_is_the_one_its_module_uses():
    from spiketandem import neuron, precision, student, surrogate, train
    from spiketandem.config import CHOICES
    from spiketandem.data import events
    from spiketandem.metrics import synops
    import importlib
    calibrate, noise = (importlib.import_module(f"spiketandem.hardware.{m}") for m in ("calibrate", "noise"))
    used = {"NEURON_KINDS": neuron, "RESETS": neuron, "NEURON_BACKENDS": neuron, "SURROGATES": surrogate,
            "INITS": student, "ENCODINGS": student, "ATTENTION_TIMES": student, "OPTIMIZERS": train, "LR_SCHEDULES": train,
            "AMP_MODES": precision, "BIN_MODES": events, "QUANT_MODES": noise, "SILENCE_MODES": noise,
            "SYNOPS_CONVENTIONS": synops}
    aliases = {"NOISE_KINDS": (noise, "KINDS"), "NOISE_PAPER_LEVELS": (noise, "PAPER_LEVELS"),
               "CALIBRATION_METHODS": (calibrate, "METHODS")}  # the hardware modules' own names for them
    declared = {name for name in vars(choices) if name.isupper()}
    assert declared == set(used) | set(aliases)
    for name, module in used.items():
        assert getattr(module, name) is getattr(choices, name), name
    for name, (module, local) in aliases.items():
        assert getattr(module, local) is getattr(choices, name), name
    assert {k: tuple(v) for k, v in CHOICES.items() if k != "optimizer"} == {
        "neuron": choices.NEURON_KINDS, "reset": choices.RESETS, "neuron_backend": choices.NEURON_BACKENDS,
        "surrogate": choices.SURROGATES, "init": choices.INITS, "encoding": choices.ENCODINGS,
        "lr_schedule": choices.LR_SCHEDULES, "amp": choices.AMP_MODES, "bins": choices.BIN_MODES,
        "synops_convention": choices.SYNOPS_CONVENTIONS, "attention_time": choices.ATTENTION_TIMES}


def test_every_declared_surrogate_neuron_and_precision_is_implemented():
    from spiketandem.kernels.codes import SURROGATE_NAMES
    from spiketandem.neuron import NeuronConfig
    from spiketandem.precision import check_amp
    from spiketandem.surrogate import _DERIVATIVES, DEFAULT_PARAM, Surrogate
    assert tuple(_DERIVATIVES) == tuple(DEFAULT_PARAM) == SURROGATE_NAMES == choices.SURROGATES
    x = torch.linspace(-1, 1, 5)
    for name in choices.SURROGATES:
        assert torch.isfinite(Surrogate(name).derivative(x)).all()
    for kind in choices.NEURON_KINDS:
        for reset in choices.RESETS:
            for backend in choices.NEURON_BACKENDS:
                NeuronConfig(kind=kind, reset=reset, backend=backend)
    for mode in choices.AMP_MODES:
        check_amp(mode, torch.device("cpu"))


@pytest.mark.parametrize("name", choices.OPTIMIZERS)
def test_every_declared_optimizer_and_schedule_is_built(name):
    from spiketandem.config import make_config
    from spiketandem.train import make_optimizer, make_scheduler
    weight = torch.nn.Parameter(torch.zeros(2))
    rule = types.SimpleNamespace(optimizer_settings=lambda cfg: {"optimizer": cfg.optimizer or "sgd", "lr": 0.1,
                                                                 "weight_decay": 0.0},
                                 optim_parameters=lambda: [weight])
    optimizer = make_optimizer(rule, make_config({"optimizer": name}))
    assert isinstance(optimizer, torch.optim.Optimizer)
    for schedule in choices.LR_SCHEDULES:
        make_scheduler(optimizer, make_config({"lr_schedule": schedule, "epochs": 4}))


def test_the_catalog_is_the_registry():
    from spiketandem.rules import CATALOG, RULES, get_rule
    assert list(RULES) == list(CATALOG)
    for name, entry in CATALOG.items():
        cls = get_rule(name)
        assert cls is RULES[name] and cls.name == name and cls.options == entry.options
        assert [o.name for o in entry.options] == [o.name for o in cls.options]


def test_the_rules_package_and_the_catalog_import_no_torch():
    import subprocess
    import sys
    code = ("import sys; from spiketandem.rules import CATALOG, configure, all_options; "
            "from spiketandem.config import make_config; configure(make_config({'rule': 'tet', 'tet_lambda': 0.5})); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
