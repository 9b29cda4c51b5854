"""Where the C++ kernel is built: one folder per environment, torch, source and flags; a notice every
time it compiles; ``prepare()`` builds it ahead of training.  Nothing here runs a compiler."""
import json

import pytest

from spiketandem import kernels
from spiketandem.kernels import cpu, ops

ENV = {"torch_dir": "/envs/a/lib/python3.11/site-packages/torch", "torch_version": "2.5.1", "torch_git": "abc",
       "python": "/envs/a/bin/python3.11", "prefix": "/envs/a", "python_version": "3.11.7", "machine": "x86_64",
       "cxx": None}
FLAGS = (["-O3", "-fopenmp"], ["-fopenmp"])


def folder(source="int f();", cflags=FLAGS[0], ldflags=FLAGS[1], **env):
    return cpu.build_dir(source, cflags, ldflags, {**ENV, **env})


def test_same_inputs_same_folder_and_a_valid_module_name():
    assert folder() == folder()
    assert folder().name.isidentifier() and folder().name.startswith("spiketandem_neuron_")
    assert folder().parent == cpu.cache_root()


@pytest.mark.parametrize("change", [
    {"torch_dir": "/envs/b/lib/python3.11/site-packages/torch"},   # a second environment, same torch version
    {"torch_version": "2.6.0"},
    {"python": "/envs/b/bin/python3.11", "prefix": "/envs/b"},
    {"python_version": "3.12.1"},
])
def test_another_environment_gets_another_folder(change):
    assert folder(**change) != folder()


def test_another_source_or_flags_get_another_folder():
    assert folder(source="int g();") != folder()
    assert folder(cflags=["-O3", "-fopenmp", "-mavx2"]) != folder()
    assert folder(ldflags=[]) != folder()


def test_the_real_key_covers_this_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    here = cpu.build_dir()
    assert here.parent == tmp_path / "spiketandem"
    env = cpu.environment()
    assert env["torch_dir"].endswith("torch") and env["torch_version"]
    assert cpu.build_dir(env={**env, "torch_dir": "/elsewhere/torch"}) != here
    assert cpu.build_key() == cpu.build_key(cpu._SOURCE, *cpu.compile_flags(), env)


class FakeBuild:
    """Stands in for torch's load_inline: records the call and writes the library file."""

    def __init__(self):
        self.calls = []

    def __call__(self, name, build_directory, **kwargs):
        self.calls.append((name, build_directory))
        (cpu.Path(build_directory) / f"{name}.so").write_bytes(b"")
        return object()


@pytest.fixture
def fake_build(monkeypatch, tmp_path):
    import torch.utils.cpp_extension
    build = FakeBuild()
    monkeypatch.setattr(torch.utils.cpp_extension, "load_inline", build)
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.delenv("SPIKETANDEM_NO_CPP", raising=False)
    monkeypatch.setattr(cpu, "_module", None)
    monkeypatch.setattr(cpu, "_failed", None)
    return build


def test_a_compilation_is_announced_with_where_and_how_long(fake_build, capsys):
    module = cpu.load()
    assert module is not None and cpu.load() is module      # once per process
    (name, where), = fake_build.calls
    assert where == str(cpu.build_dir()) and name == cpu.build_dir().name
    err = capsys.readouterr().err
    assert err.count("compiling the fused CPU neuron kernel") == 1
    assert where in err and "1-3 minutes" in err and "compiled in" in err
    info = json.loads((cpu.build_dir() / "build.json").read_text())
    assert info["env"]["torch_dir"] == cpu.environment()["torch_dir"] and info["seconds"] >= 0


def test_a_cached_build_loads_silently_and_the_estimate_comes_from_the_last_build(fake_build, capsys, monkeypatch):
    cpu.load()
    capsys.readouterr()
    monkeypatch.setattr(cpu, "_module", None)
    cpu.load()                                                # same environment: the library is there
    assert capsys.readouterr().err == ""
    (cpu.build_dir() / "build.json").write_text(json.dumps({"seconds": 142.0}))
    monkeypatch.setattr(cpu, "_module", None)
    monkeypatch.setattr(cpu, "environment", lambda: {**ENV, "prefix": "/envs/other"})   # another environment
    cpu.load()
    err = capsys.readouterr().err
    assert "compiling" in err and "took 142 s" in err
    assert len({where for _, where in fake_build.calls}) == 2


def test_prepare_builds_the_cpu_kernel_now(fake_build, capsys):
    assert kernels.prepare("cpu") == "fused C++ kernel"
    assert len(fake_build.calls) == 1
    assert kernels.prepare("cpu") == "fused C++ kernel" and len(fake_build.calls) == 1


def test_prepare_reports_the_fallback(monkeypatch, recwarn):
    monkeypatch.setattr(cpu, "_module", None)
    monkeypatch.setattr(cpu, "_failed", "no compiler (simulated)")
    monkeypatch.setattr(ops, "_warned", True)
    assert kernels.prepare("cpu") == "torch loop (no compiler (simulated))"
