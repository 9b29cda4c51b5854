"""Every code block of README.md and docs/ runs here, so that the documentation stays true.

Which blocks run.  Fenced blocks tagged ``python`` run in order, in one namespace per page; blocks tagged
``bash``/``sh``/``shell``/``console`` run through bash (``console``: the ``$ `` lines), where
``spiketandem ...`` (also ``python -m spiketandem ...`` and ``torchrun ... -m spiketandem ...``, as one process)
is answered by the CLI in this process (``spiketandem.cli.main``), ``pip install`` is checked, not run (every
extra it names exists in pyproject.toml, every other package is installed), ``python -m pytest`` is checked
(the paths it names exist), and any other command runs as it is.  Each page runs in its own empty folder,
shared by its shell and Python blocks.  ``text``, ``yaml``, ``json``, ``toml``, ``csv`` and ``markdown`` blocks
are shown, not run; a block without a language, or an indented code block, fails the test: say what it is.

Smaller settings (the one way the tests shrink what the pages show).  A page shows the settings a reader
would use; here every ``spiketandem`` command is rewritten to digits-sized values before it runs
(``shrink_command``):

- image datasets (``--dataset cifar10``, ``cifar100``, ``tiny-imagenet``, ``fashion-mnist``,
  ``imagefolder``) become ``digits``, and every ``--arch`` that is not a digits one becomes ``digits-cnn``;
  ``--width``, ``--data-dir``, ``--download`` and ``--device`` are dropped (the CPU runs them);
- event datasets (``nmnist``, ``cifar10-dvs``, ``dvs-gesture``) become ``nmnist`` read from a synthetic
  N-MNIST folder written in the release's format (``--data-dir`` points there, ``--event-size`` is dropped),
  with a quarter of the channels (``--width 0.25``) on its 34 x 34 frames;
- ``--rule dspike`` estimates its gradients on 16 first-layer weights and 16 images (``DSPIKE_SMALL``);
- ``reproduce`` prints its plan (``--dry-run``, every run's configuration resolved and checked) at
  ``--scale digits``: an experiment is many runs, which ``tests/test_reproduce.py`` runs;
- ``--teacher pretrained:NAME`` becomes a digits teacher trained once for this module;
- a run that depends on nothing in its page's folder (``spiketandem demo``, a teacher, a student of the
  shared teacher, a comparison) and was already run with the same arguments on an earlier page is not
  trained again: its folder is copied (runs are seeded, so it is the same folder);
- ``bench`` times one small round (``BENCH_SMALL``: ``--repeats 1``, ``--batches 1``, ``--n 256``, ...), its
  lists of windows, architectures, rules and peers kept to two values;
- training is one epoch on 128 training and 64 test images: ``--epochs``, ``--teacher-epochs``,
  ``--calibrate-epochs``, ``--quantized-teacher-epochs``, ``--n-train``, ``--n-test``, ``--validation`` and
  ``--verify-n`` are capped at the values of ``SMALL`` (and added where a training command omits them;
  ``--rule ptl`` keeps three epochs, one per neuron layer of digits-cnn, as it needs), and
  the lists of runs or chips to make (``compare --seeds --sweep-T --rate-penalties``, ``noise --seeds --levels``,
  ``reproduce --seeds``) keep their first two values.

Python blocks shrink the same way: a top-level assignment of one of the names of ``SMALL_PYTHON``
(``N_TRAIN = 5000``, ``EPOCHS = 10``, ``DATA_DIR = "~/data"``) is given the value there, and torchvision's
``CIFAR10``, ``CIFAR100``, ``MNIST`` and ``FashionMNIST`` are small in-memory stand-ins of the same shapes
(nothing is downloaded).  So a page states its subset as such a constant, and its code runs unchanged here.

Running it.  The pages run in the default suite: about 250 CPU seconds in all on a 2-core machine, which the
settings above keep within five minutes:
``python -m pytest tests/test_docs_code_blocks.py``; ``-k tutorials`` picks pages.  Each command's CPU and wall
time is printed with ``-s``.

Marking a block that cannot run here.  An HTML comment right before the fence (blank lines allowed),

    <!-- not-run: needs a GPU -->

with its reason, keeps the block from running.  It is still checked: its ``spiketandem`` commands are parsed
by the CLI's parser (a flag that no longer exists fails) and its Python is compiled, with every
``spiketandem`` module and name it imports or reads as ``module.name`` looked up.  At most one block in ten
(of those that would run) may be marked.  A flag or public name that no longer exists fails every block that
names it, run or not.
"""
from __future__ import annotations

import ast
import contextlib
import importlib
import importlib.util
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch.utils.data

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NOT_PAGES = ("hooks",)  # docs/ folders that hold no pages

PYTHON = {"python", "py"}
SHELL = {"bash", "sh", "shell", "console"}
SHOWN = {"text", "yaml", "yml", "json", "toml", "csv", "markdown", "md", "ini", "html", "diff", "output"}
MAX_NOT_RUN = 0.1

# ---- smaller settings ---------------------------------------------------------------------------------

SMALL = {"--epochs": 1, "--teacher-epochs": 1, "--calibrate-epochs": 1, "--quantized-teacher-epochs": 1,
         "--n-train": 128, "--n-test": 64, "--validation": 32, "--verify-n": 16}
# lists of runs to train: the first two values are kept (each value is one more run, or one more chip)
FIRST_TWO = {"compare": ("--seeds", "--sweep-T", "--rate-penalties"), "reproduce": ("--seeds",),
             "noise": ("--seeds", "--levels")}
DROPPED = ("--width", "--data-dir", "--download", "--device", "--event-size")
# commands that train, and the sizes each is given when the page leaves them out
ADDED = {
    "demo": ("--epochs", "--teacher-epochs", "--n-train", "--n-test"),
    "teacher": ("--epochs", "--n-train", "--n-test"),
    "train": ("--epochs", "--teacher-epochs", "--n-train", "--n-test"),
    "compare": ("--epochs", "--teacher-epochs", "--n-train", "--n-test"),
}
DSPIKE_SMALL = {"--dspike-fd-coords": 16, "--dspike-fd-batch": 16}
# rules that need more than SMALL's one epoch: ptl converts one neuron layer per stage, at least an epoch each
# (digits-cnn has three neuron layers; test_ptl_is_given_an_epoch_per_neuron_layer checks it)
RULE_SMALL = {"ptl": {"--epochs": 3}}
EVENT_WIDTH = 0.25
IMAGE_DATASETS = ("cifar10", "cifar100", "tiny-imagenet", "fashion-mnist", "imagefolder")
EVENT_DATASETS = ("nmnist", "cifar10-dvs", "dvs-gesture")
SMALL_PYTHON = {"N_TRAIN": 64, "N_TEST": 32, "EPOCHS": 1, "TEACHER_EPOCHS": 1}  # DATA_DIR: the synthetic data


def _split_flags(argv: list[str]) -> list[list[str]]:
    """``argv`` as groups: a flag with the values that follow it, or a lone positional word."""
    groups: list[list[str]] = []
    for word in argv:
        if word.startswith("--") and "=" in word:
            groups += [word.split("=", 1)]
        elif word.startswith("-") and not _is_number(word):
            groups.append([word])
        elif groups and groups[-1][0].startswith("-"):
            groups[-1].append(word)
        else:
            groups.append([word])
    return groups


def _is_number(word: str) -> bool:
    try:
        float(word)
        return True
    except ValueError:
        return False


# benchmarks time a few small rounds: what each one is given (or capped at), and its lists kept to two values
BENCH_SMALL = {"neuron": {"--repeats": 1, "--warmup": 0, "--n": 256, "--linear-n": 64},
               "ltl-epoch": {"--repeats": 1, "--batches": 1}, "complexity": {"--repeats": 1}}
BENCH_FIRST_TWO = ("--T", "--linear-T", "--arch", "--rules", "--peers")


def shrink_bench(argv: list[str]) -> list[str]:
    """A `spiketandem bench NAME ...` command with one short timed round (module docstring)."""
    small = BENCH_SMALL.get(argv[1] if len(argv) > 1 else "", {})
    groups = _split_flags(argv[2:])
    out = []
    for name, *values in groups:
        if name in small and len(values) == 1:
            values = [str(min(int(values[0]), small[name]))]
        elif name in BENCH_FIRST_TWO:
            values = values[:2]
        out.append([name, *values])
    out += [[name, str(value)] for name, value in small.items() if name not in {g[0] for g in groups}]
    return [*argv[:2], *(word for group in out for word in group)]


def shrink_command(argv: list[str], *, teacher: str, events_dir: str) -> list[str]:
    """A `spiketandem` command (without the program name) rewritten to digits-sized settings (module docstring)."""
    if not argv or {"-h", "--help", "--list", "--version"} & set(argv):
        return list(argv)
    if argv[0] == "bench":
        return shrink_bench(argv)
    command, groups = argv[0], _split_flags(argv[1:])
    flags = {g[0]: g for g in groups if g[0].startswith("--")}
    dataset = flags.get("--dataset", [None, None])[1]
    events = dataset in EVENT_DATASETS
    small = {**SMALL, **RULE_SMALL.get(flags.get("--rule", [None, None])[1], {})}
    out: list[list[str]] = []
    for group in groups:
        name, values = group[0], group[1:]
        if name in DROPPED:
            continue
        if name == "--dataset" and values:
            values = ["nmnist"] if events else (["digits"] if values[0] in IMAGE_DATASETS else values)
        elif name == "--arch" and values and not values[0].startswith("digits-"):
            values = ["digits-cnn"]
        elif name == "--teacher" and values and values[0].startswith("pretrained:"):
            values = [teacher]
        elif name == "--scale" and command == "reproduce":
            values = ["digits"]
        elif name in DSPIKE_SMALL and len(values) == 1:
            values = [str(DSPIKE_SMALL[name] if values[0] == "0" else min(int(values[0]), DSPIKE_SMALL[name]))]
        elif name in small and len(values) == 1 and _is_number(values[0]):
            values = [str(min(int(float(values[0])), small[name]))]
        elif name in FIRST_TWO.get(command, ()):
            values = values[:2]
        out.append([name, *values])
    if events:  # the synthetic recordings, and a quarter of the channels on their 34 x 34 frames
        out += [["--data-dir", events_dir], ["--width", str(EVENT_WIDTH)]]
    if flags.get("--rule", [None, None])[1] == "dspike":  # its finite-difference search on a few weights only
        out += [[name, str(value)] for name, value in DSPIKE_SMALL.items() if name not in flags]
    if command == "reproduce":  # a whole experiment is many runs: its plan is checked, tests/test_reproduce.py runs it
        out += [["--scale", "digits"]] if "--scale" not in flags else []
        out += [["--dry-run"]] if "--dry-run" not in flags and "--report-only" not in flags else []
    for name in ADDED.get(command, ()):
        if name not in flags:
            out.append([name, str(small[name])])
    return [command, *(word for group in out for word in group)]


# ---- finding the blocks ---------------------------------------------------------------------------------

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")
_NOT_RUN = re.compile(r"^\s*<!--\s*not-run:\s*(?P<reason>.*?)\s*-->\s*$")


@dataclass
class Block:
    page: Path
    line: int          # 1-based line of the opening fence
    language: str
    code: str
    not_run: str | None = None  # the reason, when marked

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def runnable(self) -> bool:
        return self.language in PYTHON | SHELL


def blocks_of(page: Path, text: str | None = None) -> list[Block]:
    """The fenced code blocks of a Markdown page, in order, with their language and not-run mark."""
    lines = (page.read_text(encoding="utf-8") if text is None else text).splitlines()
    found, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = len(m["indent"]), m["fence"]
        language = m["info"].strip("{}. ").split(" ")[0].lower() if m["info"] else ""
        close = re.compile(rf"^ {{0,{indent + 3}}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        body = "\n".join(line[indent:] if line[:indent].strip() == "" else line.lstrip() for line in lines[i + 1:j])
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        mark = _NOT_RUN.match(lines[k]) if k >= 0 else None
        found.append(Block(page, i + 1, language, body + "\n", mark["reason"] if mark else None))
        i = j + 1
    return found


def pages() -> list[Path]:
    found = [ROOT / "README.md"]
    found += sorted(p for p in DOCS.rglob("*.md") if not set(p.relative_to(DOCS).parts) & set(NOT_PAGES))
    return found


def rendered_code_blocks(text: str) -> int:
    """How many code blocks Markdown renders from ``text`` with the site's extensions (indented ones too)."""
    import markdown
    html = markdown.markdown(text, extensions=["admonition", "attr_list", "tables", "pymdownx.details",
                                               "pymdownx.superfences"])
    return len(re.findall(r"<pre\b", html))


# ---- checks that need nothing to run --------------------------------------------------------------------

def check_python_names(code: str, where: str) -> None:
    """Compile ``code`` and look up every ``spiketandem`` module and name it imports or reads as module.name."""
    tree = ast.parse(code, filename=where)
    modules: dict[str, str] = {}  # local name -> the spiketandem module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "spiketandem":
                    importlib.import_module(alias.name)  # a module that no longer exists fails here
                    if alias.asname:
                        modules[alias.asname] = alias.name
                    else:
                        modules["spiketandem"] = "spiketandem"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "spiketandem":
            module = importlib.import_module(node.module)
            for alias in node.names:
                if alias.name == "*":
                    continue
                full = f"{node.module}.{alias.name}"
                if _is_package(module) and importlib.util.find_spec(full) is not None:
                    modules[alias.asname or alias.name] = full
                    continue
                assert hasattr(module, alias.name), f"{where}: {node.module} has no {alias.name!r}"
                value = getattr(module, alias.name)
                if isinstance(value, type(sys)):
                    modules[alias.asname or alias.name] = value.__name__
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain = _dotted(node)
            if chain and chain[0] in modules:
                _resolve(modules[chain[0]], chain[1:], where)


def _is_package(module) -> bool:
    return hasattr(module, "__path__")


def _dotted(node: ast.Attribute) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else None


def _resolve(module_name: str, attrs: list[str], where: str) -> None:
    obj = importlib.import_module(module_name)
    path = module_name
    for attr in attrs:
        if not isinstance(obj, type(sys)):
            return  # past the modules: an object's own attributes are the running code's business
        if not hasattr(obj, attr) and _is_package(obj):
            with contextlib.suppress(ImportError):
                importlib.import_module(f"{path}.{attr}")
        assert hasattr(obj, attr), f"{where}: {path} has no {attr!r}"
        obj, path = getattr(obj, attr), f"{path}.{attr}"


def commands_of(script: str) -> list[list[str]]:
    """The simple commands of a shell script, split on newlines, ``&&``, ``||``, ``;`` and ``|``; a line's
    ``\\`` continuation joined and comments dropped (enough for the shell that documentation shows)."""
    text = re.sub(r"\\\n", " ", script)
    found = []
    for line in text.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words, current = list(lexer), []
        for word in words + [";"]:
            if set(word) <= set(";&|"):
                if current:
                    found.append(current)
                current = []
            else:
                current.append(word)
    return found


SHELL_PREFIXES = {"do", "then", "else", "time", "!", "{", "("}


def cli_words(command: list[str]) -> list[str] | None:
    """The arguments a command hands to `spiketandem`, or None when it is not a spiketandem command."""
    while command and (command[0] in SHELL_PREFIXES or re.fullmatch(r"[A-Za-z_]\w*=\S*", command[0])):
        command = command[1:]  # `do spiketandem ...` in a loop, `VAR=value spiketandem ...`
    if command and command[0] == "spiketandem":
        return command[1:]
    if "-m" in command and command[0] in ("python", "python3", "torchrun"):
        at = command.index("-m")
        if at + 1 < len(command) and command[at + 1] == "spiketandem":
            return command[at + 2:]
    return None


def check_cli_words(words: list[str], where: str) -> None:
    """Parse a `spiketandem` command with the CLI's own parser (nothing runs): unknown flags, commands and
    choices fail."""
    from spiketandem.cli import build_parser
    command = next((w for w in words if not w.startswith("-")), None)
    parser = build_parser([command] if command else [])
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(words)
        except SystemExit as exit_:
            assert exit_.code == 0, f"{where}: `spiketandem {' '.join(words)}`: {err.getvalue().strip()}"


def check_statically(block: Block) -> None:
    if block.language in PYTHON:
        check_python_names(block.code, block.where)
    elif block.language in SHELL:
        for command in commands_of(_console_commands(block) if block.language == "console" else block.code):
            words = cli_words(command)
            if words is not None:  # a shell variable stands for a value: `--lr $lr`
                check_cli_words([re.sub(r"\$\{?\w+\}?", "1", w) for w in words], block.where)


def _console_commands(block: Block) -> str:
    return "\n".join(line[2:] for line in block.code.splitlines() if line.startswith("$ ")) + "\n"


# ---- running ------------------------------------------------------------------------------------------

class _StandIn(torch.utils.data.Dataset):
    """A small in-memory stand-in of a torchvision image dataset (same image mode, size and classes)."""
    shape: tuple[int, ...] = (32, 32, 3)
    classes: list[str] = [str(c) for c in range(10)]

    def __init__(self, root=None, train: bool = True, transform=None, target_transform=None, download=False):
        rng = np.random.default_rng(0 if train else 1)
        n = 96 if train else 48
        labels = np.arange(n) % len(self.classes)
        # a class-dependent brightness, so that a model can learn something
        base = rng.integers(0, 160, (n, *self.shape)) + (labels * 9).reshape(-1, *[1] * len(self.shape))
        self.data, self.targets = base.astype(np.uint8), labels.tolist()
        self.transform, self.target_transform, self.train, self.root = transform, target_transform, train, root

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        from PIL import Image
        image = Image.fromarray(self.data[index], mode="RGB" if len(self.shape) == 3 else "L")
        label = self.targets[index]
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            label = self.target_transform(label)
        return image, label


class _CIFAR100(_StandIn):
    classes = [str(c) for c in range(100)]


class _Gray(_StandIn):
    shape = (28, 28)


STAND_INS = {"CIFAR10": _StandIn, "CIFAR100": _CIFAR100, "MNIST": _Gray, "FashionMNIST": _Gray}


@dataclass
class Runner:
    """Runs one page's blocks in ``folder``: Python in ``namespace``, shell through bash with the CLI answered
    in this process."""
    folder: Path
    teacher: str
    data_dir: Path
    reuse: dict = field(default_factory=dict)  # shared by the pages: a self-contained run's key -> its saved folder
    namespace: dict = field(default_factory=lambda: {"__name__": "__docs__"})
    log: list[str] = field(default_factory=list)

    def run(self, block: Block) -> None:
        if block.language in PYTHON:
            check_statically(block)  # a missing name is named before any of the block runs
            self.python(block)
        else:
            self.shell(block)  # the CLI's parser checks every command as it runs

    # Python
    def python(self, block: Block) -> None:
        tree = ast.parse(block.code, filename=block.where)
        for node in tree.body:
            if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
                name = node.targets[0].id
                if name in SMALL_PYTHON:
                    node.value = ast.copy_location(ast.Constant(SMALL_PYTHON[name]), node.value)
                elif name == "DATA_DIR":
                    node.value = ast.copy_location(ast.Constant(str(self.data_dir)), node.value)
        ast.fix_missing_locations(tree)
        code = compile(tree, block.where, "exec")
        start, cpu = time.perf_counter(), time.process_time()
        with _cwd(self.folder):
            exec(code, self.namespace)  # noqa: S102 - the documentation's own code
        self.log.append(f"{time.process_time() - cpu:6.1f} s CPU {time.perf_counter() - start:6.1f} s  "
                        f"python block at {block.where}")

    # shell
    def shell(self, block: Block) -> None:
        script = _console_commands(block) if block.language == "console" else block.code
        req_r, req_w = os.pipe()
        resp_r, resp_w = os.pipe()
        prelude = (
            '_docs_call() { printf \'%s\\0\' "$#" "$PWD" "$@" >&' + str(req_w) + '; local rc; '
            'IFS= read -r rc <&' + str(resp_r) + '; if [ "$rc" = real ]; then command "$@"; else return "$rc"; fi; }\n'
            'spiketandem() { _docs_call spiketandem "$@"; }\ntorchrun() { _docs_call torchrun "$@"; }\n'
            'pip() { _docs_call pip "$@"; }\npython() { _docs_call python "$@"; }\n'
            'python3() { _docs_call python3 "$@"; }\nset -euo pipefail\n')
        env = {**os.environ, "HOME": str(self.folder / "home")}
        (self.folder / "home").mkdir(exist_ok=True)
        out = self.folder / "shell-output.txt"
        with open(out, "w") as sink:
            process = subprocess.Popen(["bash", "-c", prelude + script], cwd=self.folder, env=env, stdout=sink,
                                       stderr=subprocess.STDOUT, pass_fds=(req_w, resp_r))
        os.close(req_w)
        os.close(resp_r)
        failures: list[str] = []
        try:
            with os.fdopen(req_r, "rb") as requests, os.fdopen(resp_w, "wb", buffering=0) as answers:
                for request in _requests(requests):
                    rc, message = self.answer(request)
                    if message:
                        failures.append(message)
                    answers.write(f"{rc}\n".encode())
        finally:
            code = process.wait(timeout=600)
        shown = out.read_text(errors="replace")[-3000:]
        assert code == 0 and not failures, (f"{block.where}: the shell block failed (exit {code})\n"
                                            + "\n".join(failures) + f"\n--- bash output ---\n{shown}")

    def answer(self, request: list[str]) -> tuple[str, str | None]:
        cwd, program, args = Path(request[0]), request[1], request[2:]
        words = cli_words([program, *args])
        if words is not None:
            return self.cli(words, cwd)
        if program in ("python", "python3") and args[:2] == ["-m", "pytest"]:
            missing = [a for a in args[2:] if not a.startswith("-") and not (ROOT / a.split("::")[0]).exists()]
            return ("1", f"`python -m pytest`: no such path {missing}") if missing else ("0", None)
        if program == "pip":
            problem = check_pip(args)
            return ("1", problem) if problem else ("0", None)
        if program == "torchrun":
            return "1", f"`torchrun {' '.join(args)}`: only `torchrun ... -m spiketandem ...` runs here"
        return "real", None

    def cli(self, words: list[str], cwd: Path) -> tuple[str, str | None]:
        from spiketandem.cli import main
        argv = shrink_command(words, teacher=self.teacher, events_dir=str(self.data_dir))
        key, out = _reusable(argv, cwd)
        if key in self.reuse:
            shutil.copytree(self.reuse[key], out)
            self.log.append(f"{'reused':>25}  spiketandem {' '.join(argv)}")
            return "0", None
        captured = io.StringIO()
        start, cpu = time.perf_counter(), time.process_time()
        with _cwd(cwd), contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            try:
                code = main(argv)
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
        self.log.append(f"{time.process_time() - cpu:6.1f} s CPU {time.perf_counter() - start:6.1f} s  "
                        f"spiketandem {' '.join(argv)}")
        if code:
            tail = captured.getvalue()[-2000:]
            return str(code), (f"`spiketandem {' '.join(words)}` (run as `spiketandem {' '.join(argv)}`) "
                               f"exited {code}:\n{tail}")
        if key is not None and out.is_dir():
            self.reuse[key] = shutil.copytree(out, self.data_dir.parent / "reuse" / str(len(self.reuse)))
        return "0", None


def _reusable(argv: list[str], cwd: Path) -> tuple[tuple | None, Path | None]:
    """A run that depends on nothing in its page's folder (a demo, a teacher, a student that trains its own
    teacher or learns from the shared one, a comparison of such students), given its own new folder: the key under which its finished folder is
    saved for the next page that runs the same command, and that folder.  Runs are seeded: the same command gives
    the same folder."""
    if (not argv or argv[0] not in ("demo", "teacher", "train", "compare") or "--resume" in argv
            or "--overwrite" in argv):
        return None, None
    words = list(argv)
    out = Path(cwd, "runs", "demo") if argv[0] == "demo" else None
    if "--out" in words:
        at = words.index("--out")
        out = Path(cwd, words[at + 1])
        del words[at:at + 2]
    if out is None or out.exists():
        return None, None
    if any(not w.startswith("-") and not Path(w).is_absolute() and (Path(cwd) / w).exists() for w in words[1:]):
        return None, None  # it reads another run of the page (--teacher runs/x): not the same run elsewhere
    # the flags in any order: `--T 8 --seed 0` and `--seed 0 --T 8` are the same run
    return (words[0], *sorted(tuple(group) for group in _split_flags(words[1:]))), out


def _requests(stream):
    """The requests bash writes: NUL-separated fields, the first the number of words after the folder."""
    buffer = b""
    while True:
        chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
        if not chunk:
            return
        buffer += chunk
        while True:
            fields = buffer.split(b"\0")
            if len(fields) < 2:
                break
            count = int(fields[0])
            if len(fields) < count + 3:  # count, folder, the words, and what follows the last NUL
                break
            yield [f.decode() for f in fields[1:count + 2]]
            buffer = b"\0".join(fields[count + 2:])


def check_pip(args: list[str]) -> str | None:
    """`pip install` as documentation shows it, checked without installing: extras of this project exist,
    other packages are installed."""
    from importlib.metadata import PackageNotFoundError, version
    if not args or args[0] != "install":
        return f"`pip {' '.join(args)}`: only `pip install` is checked here"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    words, skip = [], False
    for word in args[1:]:
        if skip:
            skip = False
        elif word in ("--index-url", "--extra-index-url", "-i", "-f", "--find-links", "-r"):
            skip = True
        elif not word.startswith("-"):
            words.append(word)
    for word in words:
        name, _, rest = word.partition("[")
        wanted = [e.strip() for e in rest.rstrip("]").split(",") if e.strip()]
        unknown = [e for e in wanted if e not in extras] if name in (".", "spiketandem") else []
        if unknown:
            return f"`pip install {word}`: pyproject.toml has no extra {unknown}"
        if name not in (".", "spiketandem"):
            try:
                version(re.split(r"[<>=!~ ]", name)[0])
            except PackageNotFoundError:
                return f"`pip install {word}`: {name} is not installed here"
    return None


@contextlib.contextmanager
def _cwd(path: Path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


# ---- fixtures -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def environment(tmp_path_factory):
    """Data, caches and a digits teacher shared by every page; torchvision's datasets as stand-ins."""
    import torchvision.datasets

    base = tmp_path_factory.mktemp("docs-env")
    saved = {k: os.environ.get(k) for k in ("SPIKETANDEM_CACHE", "SPIKETANDEM_DATA", "MPLBACKEND")}
    os.environ.update(SPIKETANDEM_CACHE=str(base / "cache"), SPIKETANDEM_DATA=str(base / "data"), MPLBACKEND="Agg")
    originals = {name: getattr(torchvision.datasets, name) for name in STAND_INS}
    for name, stand_in in STAND_INS.items():
        setattr(torchvision.datasets, name, stand_in)
    data_dir = base / "data"
    _write_nmnist(data_dir / "NMNIST")
    from spiketandem.cli import main
    teacher = base / "digits-teacher"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["teacher", "--dataset", "digits", "--epochs", "2", "--n-train", "256", "--n-test", "64",
                     "--quiet", "--out", str(teacher)]) == 0
    yield {"teacher": str(teacher), "data_dir": data_dir, "reuse": {}}
    for name, original in originals.items():
        setattr(torchvision.datasets, name, original)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _write_nmnist(root: Path) -> None:
    """A synthetic N-MNIST release (Train/ and Test/, one folder per digit, 40-bit event records): each digit
    fires in its own cell of a 4 x 4 grid over the 34 x 34 sensor."""
    spec = importlib.util.spec_from_file_location("event_builders", ROOT / "tests" / "data" / "event_builders.py")
    builders = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builders)
    builders.write_synthetic_nmnist(root, {"Train": 8, "Test": 3}, (60, 100))

# ---- the tests ------------------------------------------------------------------------------------------

PAGES = pages()


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_code_block_of_the_page_runs(page, environment, tmp_path, capsys):
    blocks = blocks_of(page)
    untagged = [b.where for b in blocks if not b.runnable and b.language not in SHOWN]
    assert untagged == [], f"code blocks without a known language (tag them python, bash or text): {untagged}"
    text = page.read_text(encoding="utf-8")
    assert rendered_code_blocks(text) == len(blocks), (
        f"{page.relative_to(ROOT)}: Markdown renders {rendered_code_blocks(text)} code blocks, {len(blocks)} are "
        "fenced: an indented code block is not run; fence it with its language")
    runner = Runner(tmp_path, environment["teacher"], environment["data_dir"], environment["reuse"])
    for block in blocks:
        if not block.runnable:
            continue
        if block.not_run is not None:
            assert block.not_run, f"{block.where}: a not-run mark needs its reason"
            check_statically(block)
            continue
        runner.run(block)
    with capsys.disabled():
        if runner.log:
            print(f"\n{page.relative_to(ROOT)}:\n  " + "\n  ".join(runner.log))


def test_at_most_one_block_in_ten_is_marked_not_run():
    runnable = [b for page in PAGES for b in blocks_of(page) if b.runnable]
    marked = [f"{b.where} ({b.not_run})" for b in runnable if b.not_run is not None]
    assert len(marked) <= MAX_NOT_RUN * len(runnable), (
        f"{len(marked)} of {len(runnable)} code blocks are marked not-run (at most one in ten):\n" + "\n".join(marked))


# ---- the checks themselves ------------------------------------------------------------------------------

def _page(tmp_path, text: str) -> list[Block]:
    page = ROOT / "docs" / "example.md"  # a name for the messages; the text is never written there
    return blocks_of(page, text)


def test_blocks_are_found_with_language_indent_and_mark(tmp_path):
    text = ("# t\n\n```bash\nspiketandem demo\n```\n\n- item\n\n    ```python\n    x = 1\n    ```\n\n"
            "<!-- not-run: needs a GPU -->\n\n```bash\nnvidia-smi\n```\n")
    blocks = _page(tmp_path, text)
    assert [(b.language, b.code, b.not_run) for b in blocks] == [
        ("bash", "spiketandem demo\n", None), ("python", "x = 1\n", None), ("bash", "nvidia-smi\n", "needs a GPU")]
    assert rendered_code_blocks(text) == 3
    assert rendered_code_blocks(text + "\nsome text\n\n    indented code\n") == 4


def test_a_flag_that_no_longer_exists_fails_run_or_marked(tmp_path, environment):
    block = _page(tmp_path, "```bash\nspiketandem train --no-such-flag 3\n```\n")[0]
    with pytest.raises(AssertionError, match="no-such-flag"):
        check_statically(block)
    with pytest.raises(AssertionError, match="no-such-flag"):
        Runner(tmp_path, environment["teacher"], environment["data_dir"]).run(block)
    marked = _page(tmp_path, "<!-- not-run: needs a GPU -->\n```bash\ntorchrun --nproc_per_node=2 -m spiketandem "
                             "train --epoch 3\n```\n")[0]
    with pytest.raises(AssertionError, match="did you mean --epochs"):
        check_statically(marked)


def test_a_public_name_that_no_longer_exists_fails(tmp_path):
    for code in ("from spiketandem import no_such_name\n", "from spiketandem import api\napi.no_such_function(1)\n",
                 "import spiketandem.api as st\nst.no_such_function\n", "import spiketandem\nspiketandem.nope\n"):
        with pytest.raises(AssertionError, match="no_such|nope"):
            check_python_names(code, "example")
    check_python_names("from spiketandem import api, load_student\nimport spiketandem.metrics as m\n"
                       "api.train_ltl\nm.count_ops\nload_student.__doc__\n", "example")


def test_commands_are_shrunk_to_digits_sizes():
    shrink = lambda line: " ".join(shrink_command(shlex.split(line), teacher="T", events_dir="E"))  # noqa: E731
    assert shrink("train --dataset cifar10 --data-dir ~/data --arch resnet20 --width 0.5 --T 4 --epochs 30 "
                  "--teacher pretrained:resnet20-cifar10 --device cuda") == (
        "train --dataset digits --arch digits-cnn --T 4 --epochs 1 --teacher T --teacher-epochs 1 --n-train 128 "
        "--n-test 64")
    assert shrink("train --dataset cifar10-dvs --event-size 48 --T 8 --n-train=5000") == (
        "train --dataset nmnist --T 8 --n-train 128 --data-dir E --width 0.25 --epochs 1 --teacher-epochs 1 "
        "--n-test 64")
    assert shrink("train --rule dspike --dspike-fd-coords 0") == (
        "train --rule dspike --dspike-fd-coords 16 --dspike-fd-batch 16 --epochs 1 --teacher-epochs 1 --n-train 128 "
        "--n-test 64")
    assert shrink("compare --seeds 0 1 2 --sweep-T 1 2 4 8 --epochs 0") == (
        "compare --seeds 0 1 --sweep-T 1 2 --epochs 0 --teacher-epochs 1 --n-train 128 --n-test 64")
    assert shrink("eval runs/x --eval-T 1 2 --sweep-T 1 2 4 8") == "eval runs/x --eval-T 1 2 --sweep-T 1 2 4 8"
    assert shrink("train --help") == "train --help"
    assert shrink("bench ltl-epoch --threads 1 --batches 6 --repeats 5") == (
        "bench ltl-epoch --threads 1 --batches 1 --repeats 1")
    assert shrink("bench neuron --T 10 100 1000") == (
        "bench neuron --T 10 100 --repeats 1 --warmup 0 --n 256 --linear-n 64")
    assert shrink("reproduce table1-cifar10-vgg11 --scale cpu --data-dir D --only a") == (
        "reproduce table1-cifar10-vgg11 --scale digits --only a --dry-run")
    assert shrink("train --rule ptl --neuron if --T 8 --epochs 30 --teacher runs/t") == (
        "train --rule ptl --neuron if --T 8 --epochs 3 --teacher runs/t --teacher-epochs 1 --n-train 128 --n-test 64")


def test_runs_that_depend_on_nothing_of_their_page_are_reused_under_their_arguments(tmp_path):
    key, out = _reusable(["compare", "--dataset", "digits", "--rules", "stbp", "tet", "--out", "runs/a"], tmp_path)
    assert out == tmp_path / "runs" / "a"
    assert key == _reusable(["compare", "--rules", "stbp", "tet", "--out", "runs/b", "--dataset", "digits"], tmp_path)[0]
    assert key != _reusable(["compare", "--rules", "tet", "stbp", "--dataset", "digits", "--out", "runs/c"], tmp_path)[0]
    assert key != _reusable(["compare", "--dataset", "digits", "--rules", "stbp", "--out", "runs/d"], tmp_path)[0]
    assert _reusable(["demo"], tmp_path)[1] == tmp_path / "runs" / "demo"
    (tmp_path / "runs" / "teacher").mkdir(parents=True)  # a run of the page: not the same run on another page
    assert _reusable(["compare", "--teacher", "runs/teacher", "--out", "runs/b"], tmp_path) == (None, None)
    assert _reusable(["train", "--resume", "--out", "runs/c"], tmp_path) == (None, None)
    assert _reusable(["eval", "runs/teacher"], tmp_path) == (None, None)


def test_ptl_is_given_an_epoch_per_neuron_layer():
    """ptl converts one neuron layer per stage, an epoch each at the least: RULE_SMALL gives it as many epochs as
    the digits-sized student has neuron layers."""
    import torch
    from spiketandem.models import build_model
    from spiketandem.neuron import NeuronConfig
    from spiketandem.student import build_student
    student = build_student(build_model("digits-cnn", 10, 1, 8, 1.0).eval(), NeuronConfig(kind="if"),
                            torch.zeros(2, 1, 8, 8))
    assert RULE_SMALL["ptl"]["--epochs"] == len(student.layers)


def test_shell_commands_are_split_as_bash_would():
    assert commands_of("a --x 1 \\\n  --y 2   # note\nb && c | d; e\n") == [
        ["a", "--x", "1", "--y", "2"], ["b"], ["c"], ["d"], ["e"]]
    loop = commands_of("for lr in 1e-3 3e-4; do\n    spiketandem train --lr $lr --out runs/x-$lr\ndone\n")
    assert [w for w in map(cli_words, loop) if w] == [["train", "--lr", "$lr", "--out", "runs/x-$lr"]]
    assert cli_words(["do", "spiketandem", "eval", "r"]) == ["eval", "r"]
    check_statically(_page(None, "<!-- not-run: x -->\n```bash\n" + "for T in 2 4; do spiketandem train --T $T; "
                                 "done\n```\n")[0])
    with pytest.raises(AssertionError, match="--epoch"):
        check_statically(_page(None, "```bash\nfor T in 2 4; do spiketandem train --T $T --epoch 2; done\n```\n")[0])


def test_pip_install_is_checked_against_the_extras():
    assert check_pip(["install", "-e", "."]) is None
    assert check_pip(["install", "-e", ".[nir,events]"]) is None
    assert "no extra" in check_pip(["install", "-e", ".[no-such-extra]"])
