"""RuleWrapper forwards the whole rule contract to the rule it wraps, so OnChip and Pipelined override only
what they change."""
import inspect

import pytest

from spiketandem.hardware.calibrate import OnChip
from spiketandem.pipelining.rule import Pipelined
from spiketandem.rules.base import Rule
from spiketandem.rules.wrapper import RuleWrapper

CONTRACT = sorted(name for name, member in vars(Rule).items()
                  if callable(member) and not name.startswith("_")
                  and name not in ("option", "option_named", "require_teacher"))  # helpers for rule authors


class _Recorder:
    """An inner rule that records every call of the contract (name and arguments) and answers with its name."""

    cfg = info = teacher = model = None
    name, spiking, needs_teacher = "inner", True, True

    def __init__(self):
        self.calls = []

    def __getattr__(self, method):
        return lambda *args, **kwargs: self.calls.append((method, args)) or method


def test_the_contract_is_every_public_method_of_rule():
    assert {"modules", "optim_parameters", "state_dict", "load_state_dict", "extra_state", "load_extra_state",
            "train", "setup", "on_epoch_start", "on_epoch_end", "on_distributed", "summary_extras", "loss",
            "train_step", "predict", "context", "membrane_init"} <= set(CONTRACT)


@pytest.mark.parametrize("method", CONTRACT)
def test_the_wrapper_forwards_each_method_with_its_arguments(method):
    inner = _Recorder()
    wrapper = RuleWrapper(inner)
    params = [p for p in inspect.signature(getattr(Rule, method)).parameters.values()
              if p.name != "self" and p.kind is p.POSITIONAL_OR_KEYWORD]
    args = tuple(f"arg{i}" for i in range(len(params)))
    answer = getattr(wrapper, method)(*args)
    assert len(inner.calls) == 1
    called, got = inner.calls[0]
    assert called == method and got[:len(args)] == args
    if answer is not None:  # what the inner rule answers is the wrapper's answer
        assert answer == method


@pytest.mark.parametrize("wrapper", [OnChip, Pipelined])
def test_the_rule_wrappers_override_only_what_they_change(wrapper):
    overridden = {name for name in CONTRACT if name in vars(wrapper)}
    changes = {OnChip: {"setup", "train_step", "context", "predict"},
               Pipelined: {"setup", "on_epoch_start", "on_epoch_end", "summary_extras", "train_step"}}[wrapper]
    assert overridden == changes
