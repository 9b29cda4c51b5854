"""The CLI's glibc malloc tuning (spiketandem.allocator): what it asks of glibc, and when it stays out."""
import ctypes
import os
import platform
import subprocess
import sys

import pytest

from spiketandem import allocator


@pytest.fixture(autouse=True)
def _forget_what_was_set(monkeypatch):
    """Each test's record of the setting is its own (a fake C library's answer must not outlive its test)."""
    monkeypatch.setattr(allocator, "_in_effect", None)


class FakeLibc:
    """A C library that records mallopt calls and answers ``answer`` (glibc: 1 = done, 0 = refused)."""

    def __init__(self, answer=1, glibc=True):
        self.calls, self.answer = [], answer
        if glibc:
            self.gnu_get_libc_version = lambda: b"2.36"

    def mallopt(self, param, value):
        self.calls.append((param.value, value.value))
        return self.answer


def test_it_raises_glibcs_trim_threshold_and_top_pad_to_one_gib():
    libc = FakeLibc()
    said = allocator.keep_freed_memory(libc, environ={})
    assert libc.calls == [(-1, 1 << 30), (-2, 1 << 30)]  # M_TRIM_THRESHOLD = -1, M_TOP_PAD = -2 in malloc.h
    assert said == "mallopt: trim threshold 1073741824, top pad 1073741824"
    assert allocator.in_effect() == said


@pytest.mark.parametrize("environ", [{"MALLOC_TRIM_THRESHOLD_": "131072"}, {"MALLOC_ARENA_MAX": "2"},
                                     {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"},
                                     {"SPIKETANDEM_MALLOC_TUNING": "off"}])
def test_a_users_own_malloc_setting_wins(environ):
    libc = FakeLibc()
    said = allocator.keep_freed_memory(libc, environ=environ)
    assert libc.calls == []
    key, value = next(iter(environ.items()))
    assert said == f"user: {key}={value}"


def test_other_c_libraries_are_left_alone_and_a_refusal_is_reported():
    other = FakeLibc(glibc=False)
    assert allocator.keep_freed_memory(other, environ={}) == "not glibc" and other.calls == []
    refusing = FakeLibc(answer=0)
    assert allocator.keep_freed_memory(refusing, environ={}) == "mallopt refused: trim threshold, top pad"


def test_glibc_itself_accepts_both_values():
    """On this machine's C library (glibc on Linux), mallopt answers 1 for both settings."""
    libc = ctypes.CDLL(None)
    if platform.system() != "Linux" or not hasattr(libc, "gnu_get_libc_version"):
        pytest.skip("not glibc: the tuning is not applied there (test_other_c_libraries_are_left_alone...)")
    assert allocator.keep_freed_memory(environ={}).startswith("mallopt: ")


def test_training_computes_the_same_weights_with_and_without_the_tuning(tmp_path):
    """Only where freed pages go changes: the same command trains bit-identical weights either way."""
    import torch
    env = {k: v for k, v in os.environ.items() if k not in allocator.GLIBC_VARIABLES + (allocator.OPT_OUT,)}
    env.pop("GLIBC_TUNABLES", None)
    flags = ["train", "--dataset", "digits", "--arch", "digits-cnn", "--n-train", "128", "--n-test", "64",
             "--teacher-epochs", "1", "--epochs", "1", "--batch-size", "32", "--T", "4", "--eval-T", "4",
             "--device", "cpu", "--quiet", "--seed", "3"]
    weights = []
    for name, extra in (("tuned", {}), ("defaults", {allocator.OPT_OUT: "off"})):
        done = subprocess.run([sys.executable, "-m", "spiketandem", *flags, "--out", str(tmp_path / name)],
                              env={**env, **extra}, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        weights.append(torch.load(tmp_path / name / "student.pt", map_location="cpu", weights_only=True))
    tuned, default = (w["state"]["model"] for w in weights)
    assert tuned.keys() == default.keys() and len(tuned) > 0
    assert all(torch.equal(tuned[k], default[k]) for k in tuned)
