"""docs/ARCHITECTURE.md's recipes stay true: in a scratch copy of the package, a toy extension of each kind
is added by exactly the documented edits (a learning rule, a run setting, a neuron model, an image dataset,
an event dataset, a noise kind), each touching at most 2 files; the command line offers it (without
importing torch), and it runs: a short training by the toy rule, with the toy setting, of the toy neuron
on the toy images; the toy event recordings binned; a `noise` sweep of the toy kind on that run."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "spiketandem"


def _after(anchor: str, added: str):
    def edit(text: str) -> str:
        assert anchor in text, f"the recipe's anchor moved: {anchor!r}"
        return text.replace(anchor, anchor + added, 1)
    return edit


def _replace(old: str, new: str):
    def edit(text: str) -> str:
        assert old in text, f"the recipe's anchor moved: {old!r}"
        return text.replace(old, new, 1)
    return edit


TOY_STEP = '''

def toy_step(current, state, alpha, threshold, reset, surrogate, detach_reset=False):
    """A toy neuron: U[t] = a U[t-1] + 2 I[t] - theta S[t-1]."""
    return neuron_step(2 * current, state, alpha, threshold, "subtract", surrogate, detach_reset)
'''

TOY_IMAGES = '''"""A toy image dataset: the first 300 digits."""
from ..arrays import RawSplits
from ..specs import DatasetSpec
from .digits import load_digits_splits


def load_toy() -> RawSplits:
    d = load_digits_splits()
    return RawSplits(d.train_x[:200], d.train_y[:200], d.test_x[:100], d.test_y[:100], d.classes)


SPECS = {"toy-images": DatasetSpec("toy-images", (), (), (), augment=False, how_to_get="it is a toy",
                                   shipped=load_toy)}
'''

TOY_EVENTS = '''"""A toy event dataset: Train/<class>/*.npy and Test/<class>/*.npy, columns x, y, t (us), p."""
import numpy as np

from ..events import EventDatasetSpec


def read_toy(path):
    raw = np.load(path)
    return raw[:, 0], raw[:, 1], raw[:, 2], raw[:, 3]


SPECS = {"toy-events": EventDatasetSpec("toy-events", (8, 8), ("a", "b"), ("toy",), ("Train", "Test"), ".npy",
                                        "write it yourself", read_toy)}
'''

TOY_NOISE = '''

class ToyOffset(NoiseKind):
    """A toy non-ideality: every neuron's input current offset by the level, I' = I + level."""

    name, label = "toy", "current offset"

    def current_hook(self, spec, chip, name, index, straight_through):
        return lambda current, t: current + spec.level
'''

TOY_RULE = '''"""A toy rule: offline LTL with one more option."""
from .catalog import CATALOG
from .ltl_offline import LTLOffline


class ToyRule(LTLOffline):
    name = "toy-rule"
    options = CATALOG[name].options

    def __init__(self, cfg, info, teacher=None, calibration=None):
        super().__init__(cfg, info, teacher, calibration)
        assert self.option("toy_lambda") == 0.25
'''

RECIPES = {
    "a learning rule": {
        "rules/toy_rule.py": lambda text: TOY_RULE,
        "rules/catalog.py": _after('    RuleEntry("ltl-offline", "ltl_offline:LTLOffline", LTL_OFFLINE_OPTIONS),\n',
                                   '    RuleEntry("toy-rule", "toy_rule:ToyRule", LTL_OFFLINE_OPTIONS + (Option('
                                   '"toy_lambda", float, 0.05, "a toy", minimum=0.0, maximum=1.0),)),\n'),
    },
    "a run setting": {
        "config.py": _after("    # data\n", '    toy_setting: int = setting(3, "a toy setting", group="data", '
                                            'metavar="N", minimum=1)\n'),
    },
    "a neuron model": {
        "choices.py": _replace('NEURON_KINDS = ("if", "lif")', 'NEURON_KINDS = ("if", "lif", "toy")'),
        "neuron.py": lambda text: _after('    NeuronModel("lif", _lif_alpha),\n',
                                          '    NeuronModel("toy", lambda c: 0.5, toy_step, fused=False),\n')(
            _after("    return math.exp(-c.dt / c.tau_m) if c.tau_m > 0 and c.dt > 0 else float(\"nan\")\n",
                   TOY_STEP)(text)),
    },
    "an image dataset": {
        "data/formats/toy_images.py": lambda text: TOY_IMAGES,
        "data/registry.py": _after('    DatasetEntry("digits", "image", "digits", "digits-cnn"),\n',
                                   '    DatasetEntry("toy-images", "image", "toy_images", "digits-mlp"),\n'),
    },
    "an event dataset": {
        "data/formats/toy_events.py": lambda text: TOY_EVENTS,
        "data/registry.py": _after('    DatasetEntry("dvs-gesture", "event", "event_cameras"),\n',
                                   '    DatasetEntry("toy-events", "event", "toy_events"),\n'),
    },
    "a noise kind": {
        "choices.py": lambda text: _replace('NOISE_PAPER_LEVELS = {', 'NOISE_PAPER_LEVELS = {"toy": (0.1,), ')(
            _replace('NOISE_KINDS = ("mismatch", "quantization", "thermal", "silencing")',
                     'NOISE_KINDS = ("mismatch", "quantization", "thermal", "silencing", "toy")')(text)),
        "hardware/noise.py": lambda text: _replace(
            "NOISE_MODELS: dict[str, NoiseKind] = {k.name: k for k in (Mismatch(), Quantization(), Thermal(), "
            "Silencing())}",
            "NOISE_MODELS: dict[str, NoiseKind] = {k.name: k for k in (Mismatch(), Quantization(), Thermal(), "
            "Silencing(), ToyOffset())}")(_after("        return chip.masks[(name, shape)].to(spikes.device, "
                                                 "spikes.dtype)\n", TOY_NOISE)(text)),
    },
}

HELP = """
import sys
from spiketandem.cli import main
for argv in (["train", "--help"], ["noise", "--help"]):
    try:
        main(argv)
    except SystemExit:
        pass
print("TORCH" if "torch" in sys.modules else "TORCH-FREE")
"""

RUN = """
import json, sys
import numpy as np
import torch
from spiketandem.cli import main
from spiketandem.kernels import unfused_reason
from spiketandem.neuron import NEURON_MODELS, run_neuron
from spiketandem.surrogate import Surrogate
from spiketandem.data.events import load_event_dataset
from spiketandem.data.registry import is_event_dataset

# the neuron: its update, on the reference path (the fused kernel declines it)
I = torch.rand(4, 3, 5)
toy, _ = run_neuron(I, 4, 0.5, 1.0, "subtract", Surrogate(), kind="toy")
ref, _ = run_neuron(2 * I, 4, 0.5, 1.0, "subtract", Surrogate(), backend="reference")
assert torch.equal(toy, ref)
assert "toy" in unfused_reason(I, 0.5, 1.0, model=NEURON_MODELS["toy"])
# the event dataset: its recordings read by its own reader and binned
root = sys.argv[1] + "/events"
rng = np.random.default_rng(0)
for split in ("Train", "Test"):
    for c in ("a", "b"):
        for i in range(2):
            f = f"{root}/{split}/{c}/{i}.npy"
            __import__("os").makedirs(f.rsplit("/", 1)[0], exist_ok=True)
            n = 50
            np.save(f, np.stack([rng.integers(0, 8, n), rng.integers(0, 8, n), np.sort(rng.integers(0, 1000, n)),
                                 rng.integers(0, 2, n)], 1))
frames = load_event_dataset("toy-events", root, T=2, cache_dir=sys.argv[1] + "/cache")
assert frames.train_x.shape == (4, 2, 2, 8, 8) and int(frames.train_x.sum()) == 4 * 50 and is_event_dataset("toy-events")
# the neuron and the image dataset end to end, then the noise kind on that run
run = sys.argv[1] + "/run"
common = ["--quiet", "--json", "--device", "cpu"]
assert main(["train", "--dataset", "toy-images", "--neuron", "toy", "--rule", "toy-rule", "--toy-lambda", "0.25",
             "--toy-setting", "2", "--T", "2", "--epochs", "1", "--teacher-epochs", "1", "--out", run] + common) == 0
summary = json.load(open(run + "/summary.json"))
assert summary["dataset"] == "toy-images" and summary["neuron"] == "toy" and summary["arch"] == "digits-mlp", summary
assert summary["rule"] == "toy-rule" and "toy_setting: 2" in open(run + "/config.yaml").read()
assert main(["noise", run, "--kind", "toy", "--levels", "0", "5", "--calibrate-epochs", "0", "--methods", "ltl",
             "--json", "--quiet"]) == 0
result = json.load(open(run + "/noise-toy.json"))
before = [e["before"]["mean"] for e in result["summary"]]
assert result["kind"] == "toy" and before[1] < before[0], result["summary"]  # a large offset: the chip fails
print("RAN")
"""


def _scratch(tmp_path: Path) -> tuple[Path, dict]:
    """The package copied and every recipe applied; the files each recipe touched."""
    root = tmp_path / "src"
    shutil.copytree(SRC, root / "spiketandem", ignore=shutil.ignore_patterns("__pycache__", "*.pt"))
    touched = {}
    for recipe, edits in RECIPES.items():
        for rel, edit in edits.items():
            path = root / "spiketandem" / rel
            path.write_text(edit(path.read_text() if path.exists() else ""))
        touched[recipe] = sorted(edits)
    return root, touched


def _python(root: Path, script: str, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env,
                          timeout=600)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return _scratch(tmp_path_factory.mktemp("recipes"))


def test_each_recipe_touches_at_most_two_files(scratch):
    _, touched = scratch
    assert all(len(files) <= 2 for files in touched.values()), touched
    table = (SRC.parents[1] / "docs" / "ARCHITECTURE.md").read_text()
    for recipe, files in touched.items():
        row = next(line for line in table.splitlines() if line.startswith(f"| {recipe} |"))
        assert row.split("|")[2].strip() == str(len(files)), row  # the table says how many
        for f in files:  # a file edited is named in the row; a new one by its folder
            named = (f, Path(f).name, Path(f).stem + ".") if (SRC / f).exists() else (str(Path(f).parent) + "/",)
            assert any(name in row for name in named), (f, row)


def test_the_command_line_offers_each_toy_without_torch(scratch):
    root, _ = scratch
    out = _python(root, HELP)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert "TORCH-FREE" in text
    assert "if,lif,toy" in text.replace(" ", "") and "toy-images" in text and "toy-events" in text
    assert "mismatch,quantization,thermal,silencing,toy" in text.replace(" ", "")
    assert "--toy-lambda" in text and "toy-rule" in text and "--toy-setting N" in text


def test_each_toy_runs_end_to_end(scratch, tmp_path):
    root, _ = scratch
    out = _python(root, RUN, str(tmp_path))
    assert out.returncode == 0 and "RAN" in out.stdout, out.stderr[-4000:] + out.stdout[-2000:]
