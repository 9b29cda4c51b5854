"""glibc malloc tuning for CPU training: large tensors come from the heap's top instead of fresh mappings.

glibc serves a request from the top of its heap when the top is large enough; otherwise it asks the
system for more: a fresh ``mmap`` for a block above ``M_MMAP_THRESHOLD`` (which adapts upwards to at
most 32 MiB), given back (``munmap``) when freed.  A T = 8 student allocates blocks above that every
step (a ``[T, B, 16, 32, 32]`` float spike tensor at batch 128 is 67 MB), and each fresh block costs
a page fault per 4 KiB page when first written.  ``M_TOP_PAD`` = 1 GiB makes each growth of the heap
reserve 1 GiB more, so those blocks are carved from the heap's top and returned to it with their pages
still mapped; ``M_TRIM_THRESHOLD`` = 1 GiB keeps up to that much free top memory in the process.
Setting either one stops glibc adapting ``M_MMAP_THRESHOLD`` (it stays at 128 KiB): the trim threshold
alone is slower than glibc's defaults, the top pad is what helps.  docs/performance.md ("Allocator")
has the measurements and ``benchmarks/allocator.py`` repeats them.  The cost: the process keeps
up to 1 GiB of freed memory for reuse instead of returning it.

Only the `spiketandem` command applies it (a library should not change its host process's allocator;
call :func:`keep_freed_memory` yourself from the Python API).  It leaves glibc alone when the user
set any of glibc's own malloc variables (``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``,
``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_ARENA_MAX`` or a ``glibc.malloc`` entry of ``GLIBC_TUNABLES``),
when ``SPIKETANDEM_MALLOC_TUNING=off``, and on a C library other than glibc (macOS, musl).
Numerics do not depend on it: the same tensors are computed, only their pages are recycled.
"""
from __future__ import annotations

import ctypes
import os

M_TRIM_THRESHOLD = -1  # mallopt's parameter numbers (glibc malloc.h)
M_TOP_PAD = -2
TRIM_THRESHOLD = 1 << 30  # bytes: mallopt takes an int, so at most 2 GiB - 1
TOP_PAD = 1 << 30
OPT_OUT = "SPIKETANDEM_MALLOC_TUNING"
GLIBC_VARIABLES = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_ARENA_MAX")
_in_effect: str | None = None  # what keep_freed_memory did in this process (None: not called)


def _user_setting(environ) -> str | None:
    """The user's own malloc setting in ``environ`` (which then wins), or None."""
    if environ.get(OPT_OUT, "").lower() in ("off", "0", "no", "false"):
        return f"{OPT_OUT}={environ[OPT_OUT]}"
    mine = [f"{k}={environ[k]}" for k in GLIBC_VARIABLES if k in environ]
    if "glibc.malloc" in environ.get("GLIBC_TUNABLES", ""):
        mine.append(f"GLIBC_TUNABLES={environ['GLIBC_TUNABLES']}")
    return ", ".join(mine) or None


def keep_freed_memory(libc=None, environ=None) -> str:
    """Set glibc's ``M_TRIM_THRESHOLD`` and ``M_TOP_PAD`` to 1 GiB, unless the user chose otherwise.

    Returns what is in effect afterwards, as recorded by the benchmarks: ``"mallopt: trim threshold
    1073741824, top pad 1073741824"``, ``"user: MALLOC_TRIM_THRESHOLD_=..."``, ``"not glibc"``, or
    ``"mallopt refused: ..."`` naming a value glibc rejected (the other one still holds).
    """
    global _in_effect
    _in_effect = _apply(libc, os.environ if environ is None else environ)
    return _in_effect


def _apply(libc, environ) -> str:
    mine = _user_setting(environ)
    if mine:
        return f"user: {mine}"
    if libc is None:
        try:
            libc = ctypes.CDLL(None)
        except OSError:
            return "not glibc"
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return "not glibc"
    refused = [name for name, param, value in (("trim threshold", M_TRIM_THRESHOLD, TRIM_THRESHOLD),
                                               ("top pad", M_TOP_PAD, TOP_PAD))
               if libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) != 1]
    if refused:
        return "mallopt refused: " + ", ".join(refused)
    return f"mallopt: trim threshold {TRIM_THRESHOLD}, top pad {TOP_PAD}"


def in_effect() -> str:
    """This process's malloc setting, for the benchmarks' records: :func:`keep_freed_memory`'s answer,
    else the user's variables or glibc's defaults."""
    if _in_effect is not None:
        return _in_effect
    mine = _user_setting(os.environ)
    return f"user: {mine}" if mine else "C library defaults"
