"""The CPU kernels of the fused neuron: C++ built once with ``torch.utils.cpp_extension.load_inline``.

Each thread owns blocks of ``BLOCK`` neurons and walks them through time with their state in a small
local array (L1-resident), so the ``[T, N]`` tensors are streamed once in each direction.  The
arithmetic repeats the reference's operation order exactly (``((a*U) + I) - theta*S`` and
``((a*U) * (1-S)) + I``; compiled with ``-ffp-contract=off`` so no fused multiply-add changes a
rounding; ``-fno-trapping-math`` only lets the compiler vectorize the selects, it changes no value),
hence the spikes and states equal ``neuron.run_neuron``'s bit for bit.  The recursions
are documented in ``spiketandem.kernels``.  If the build fails, ``load()`` returns ``None`` and the
caller falls back to the torch loop in ``torch_loop.py``; ``SPIKETANDEM_NO_CPP=1`` forces that fallback.

Builds are cached in one folder per build key (``build_dir()``: ``<torch extensions dir>/spiketandem/
spiketandem_neuron_<key>``), the key a hash of torch's install location and version, the Python
executable, prefix and version, the kernel source and the compile flags.  Two environments on one
machine (or two versions of this kernel) therefore each keep their own build instead of rebuilding each
other's for minutes, and a stale library is never loaded.  A compilation is announced on stderr (where,
and about how long); ``spiketandem.kernels.prepare()`` does it before a training clock starts.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <cstdint>

namespace {
constexpr int64_t BLOCK = 64;
// blocks per parallel task: at least ~128k neuron-steps, so small layers stay on one thread (waking
// threads costs more than the work) and large ones split evenly
inline int64_t grain(int64_t steps) {
  return std::max<int64_t>(1, (int64_t(1) << 17) / (BLOCK * std::max<int64_t>(steps, 1)));
}

// surrogate kinds, in the order of spiketandem.kernels.codes.SURROGATE_NAMES
template <typename T> inline T surrogate(T x, int64_t kind, T p) {
  switch (kind) {
    case 0: return std::abs(x) < p / T(2) ? T(1) / p : T(0);                       // boxcar
    case 1: { T s = T(1) / (T(1) + std::exp(-p * x)); return p * s * (T(1) - s); } // sigmoid
    case 2: { T z = T(M_PI / 2) * p * x; return (p / T(2)) / (T(1) + z * z); }       // atan
    case 3: { T h = p / T(2); T v = T(1) - std::abs(x) / h; return v > T(0) ? v / h : T(0); } // triangle
    default: { if (std::abs(x) > T(0.5)) return T(0);                               // dspike
               T peak = p / (T(2) * std::tanh(p / T(2))); T c = std::cosh(p * x); return peak / (c * c); }
  }
}

// SAVE: 0 nothing, 1 uint8 gate|spike mask, 2 membrane U[t].  One block of n <= BLOCK neurons through all
// steps.  Branches on template constants vanish; the pointers are restrict parameters and the scalars plain
// values (not lambda captures, which a uint8 store could alias), so the inner loops vectorize.
template <typename T, bool ZERO, int SAVE>
void forward_block(const T* __restrict__ I, int64_t t_stride, const T* __restrict__ u0, const T* __restrict__ s0,
                   T* __restrict__ S, T* __restrict__ u_last, T* __restrict__ s_last, uint8_t* __restrict__ mask,
                   T* __restrict__ U, int64_t steps, int64_t N, int64_t n, T a, T theta, T half_width) {
  T u[BLOCK], s[BLOCK];
  int32_t code[BLOCK];  // the mask at full width first: mixed float/uint8 arithmetic would not vectorize
  for (int64_t j = 0; j < n; ++j) { u[j] = u0[j]; s[j] = s0[j]; }
  for (int64_t t = 0; t < steps; ++t) {
    const T* __restrict__ It = I + t * t_stride;
    T* __restrict__ St = S + t * N;
    for (int64_t j = 0; j < n; ++j) {
      const T v = ZERO ? (a * u[j]) * (T(1) - s[j]) + It[j] : (a * u[j] + It[j]) - theta * s[j];
      const T sp = v >= theta ? T(1) : T(0);
      St[j] = sp; u[j] = v; s[j] = sp;
      if (SAVE == 1) code[j] = (std::abs((v - theta) / theta) < half_width ? 1 : 0) | (v >= theta ? 2 : 0);
      if (SAVE == 2) U[t * N + j] = v;
    }
    if (SAVE == 1) for (int64_t j = 0; j < n; ++j) mask[t * N + j] = uint8_t(code[j]);
  }
  for (int64_t j = 0; j < n; ++j) { u_last[j] = u[j]; s_last[j] = s[j]; }
}

template <typename T, bool ZERO, int SAVE>
void forward_kernel(const T* I, int64_t t_stride, const T* u0, const T* s0, T* S, T* u_last, T* s_last,
                    uint8_t* mask, T* U, int64_t steps, int64_t N, T a, T theta, T half_width) {
  at::parallel_for(0, (N + BLOCK - 1) / BLOCK, grain(steps), [&](int64_t b_begin, int64_t b_end) {
    for (int64_t b = b_begin; b < b_end; ++b) {
      const int64_t n0 = b * BLOCK;
      forward_block<T, ZERO, SAVE>(I + n0, t_stride, u0 + n0, s0 + n0, S + n0, u_last + n0, s_last + n0,
                                   mask ? mask + n0 : nullptr, U ? U + n0 : nullptr, steps, N,
                                   std::min(BLOCK, N - n0), a, theta, half_width);
    }
  });
}

// One step of the reverse recursion for n neurons; every array a restrict parameter so the loop vectorizes.
template <typename T, bool ZERO, bool DETACH, int KIND>
inline void backward_step(const T* __restrict__ g_t, const int32_t* __restrict__ code, const T* __restrict__ Ut,
                          T* __restrict__ dst, T* __restrict__ e, T* __restrict__ acc, const T* __restrict__ xs,
                          const T* __restrict__ xu, int64_t n, T a, T theta, T p, T box) {
  for (int64_t j = 0; j < n; ++j) {
    T g = g_t[j] + xs[j];
    T h, sp, v = T(0);
    if (KIND < 0) {
      const int32_t m = code[j];
      h = (m & 1) ? box : T(0);
      sp = (m & 2) ? T(1) : T(0);
    } else {
      v = Ut[j];
      sp = v >= theta ? T(1) : T(0);
      h = surrogate<T>((v - theta) / theta, KIND, p) / theta;
    }
    if (!DETACH) g -= ZERO ? (a * v) * e[j] : theta * e[j];     // reset term through S[t]
    const T carry = ZERO ? a * (T(1) - sp) * e[j] : a * e[j];    // leak term through U[t]
    const T ej = g * h + carry + xu[j];
    e[j] = ej;
    acc[j] += ej;
    dst[j] = ej;
  }
}

// KIND: surrogate code (0-4) with U saved, or -1 for the boxcar mask.  dst: dL/dI [T, N], or with
// accumulate (a static current) the sum over time [N].
template <typename T, bool ZERO, bool DETACH, int KIND>
// U and gI are not restrict: with into_saved they are the same buffer (each U[t] row is copied out
// before e[t] overwrites it).
void backward_block(const T* __restrict__ gS, int64_t gs_t, int64_t gs_n, const T* __restrict__ gU_last,
                    const T* __restrict__ gS_last, const uint8_t* __restrict__ mask, const T* U, T* gI,
                    bool accumulate, bool into_saved, int64_t steps, int64_t N, int64_t n, T a, T theta, T p) {
  const T box = T(1) / p / theta;
  T e[BLOCK], acc[BLOCK], xs[BLOCK], xu[BLOCK], row[BLOCK], dump[BLOCK], urow[BLOCK];
  int32_t code[BLOCK];
  for (int64_t j = 0; j < n; ++j) {  // the final state's gradients enter at the last step only
    e[j] = T(0); acc[j] = T(0); xs[j] = gS_last[j]; xu[j] = gU_last[j];
  }
  for (int64_t t = steps - 1; t >= 0; --t) {
    const T* g_t = gS + t * gs_t;
    if (gs_n != 1) { for (int64_t j = 0; j < n; ++j) row[j] = g_t[j * gs_n]; g_t = row; }  // strided/expanded
    T* __restrict__ dst = accumulate ? dump : gI + t * N;
    if (KIND < 0) for (int64_t j = 0; j < n; ++j) code[j] = mask[t * N + j];   // widen first (see forward)
    const T* u_t = KIND < 0 ? nullptr : U + t * N;
    if (KIND >= 0 && into_saved) { for (int64_t j = 0; j < n; ++j) urow[j] = u_t[j]; u_t = urow; }
    backward_step<T, ZERO, DETACH, KIND>(g_t, code, u_t, dst, e, acc, xs, xu, n, a, theta, p, box);
    if (t == steps - 1) for (int64_t j = 0; j < n; ++j) { xs[j] = T(0); xu[j] = T(0); }
  }
  if (accumulate) for (int64_t j = 0; j < n; ++j) gI[j] = acc[j];
}

template <typename T, bool ZERO, bool DETACH, int KIND>
void backward_kernel(const T* gS, int64_t gs_t, int64_t gs_n, const T* gU_last, const T* gS_last,
                     const uint8_t* mask, const T* U, T* gI, bool accumulate, bool into_saved, int64_t steps,
                     int64_t N, T a, T theta, T p) {
  at::parallel_for(0, (N + BLOCK - 1) / BLOCK, grain(steps), [&](int64_t b_begin, int64_t b_end) {
    for (int64_t b = b_begin; b < b_end; ++b) {
      const int64_t n0 = b * BLOCK;
      backward_block<T, ZERO, DETACH, KIND>(gS + n0 * gs_n, gs_t, gs_n, gU_last + n0, gS_last + n0,
                                            mask ? mask + n0 : nullptr, U ? U + n0 : nullptr, gI + n0, accumulate,
                                            into_saved, steps, N, std::min(BLOCK, N - n0), a, theta, p);
    }
  });
}

template <typename T, bool ZERO, bool DETACH>
void backward_kind(int64_t kind, const T* gS, int64_t gs_t, int64_t gs_n, const T* gU_last, const T* gS_last,
                   const uint8_t* mask, const T* U, T* gI, bool accumulate, bool into, int64_t steps, int64_t N,
                   T a, T theta, T p) {
#define ST_BWD(K) backward_kernel<T, ZERO, DETACH, K>(gS, gs_t, gs_n, gU_last, gS_last, mask, U, gI, accumulate, \
                                                       into, steps, N, a, theta, p)
  if (mask) { ST_BWD(-1); return; }
  switch (kind) {
    case 0: ST_BWD(0); break;
    case 1: ST_BWD(1); break;
    case 2: ST_BWD(2); break;
    case 3: ST_BWD(3); break;
    default: ST_BWD(4);
  }
#undef ST_BWD
}
}  // namespace

template <typename T>
void forward_dispatch(const T* I, int64_t ts, const T* u0, const T* s0, T* S, T* u_last, T* s_last, uint8_t* m,
                      T* U, int64_t steps, int64_t N, T a, T theta, T hw, bool zero, int64_t save) {
  if (zero) {
    if (save == 1) forward_kernel<T, true, 1>(I, ts, u0, s0, S, u_last, s_last, m, U, steps, N, a, theta, hw);
    else if (save == 2) forward_kernel<T, true, 2>(I, ts, u0, s0, S, u_last, s_last, m, U, steps, N, a, theta, hw);
    else forward_kernel<T, true, 0>(I, ts, u0, s0, S, u_last, s_last, m, U, steps, N, a, theta, hw);
  } else {
    if (save == 1) forward_kernel<T, false, 1>(I, ts, u0, s0, S, u_last, s_last, m, U, steps, N, a, theta, hw);
    else if (save == 2) forward_kernel<T, false, 2>(I, ts, u0, s0, S, u_last, s_last, m, U, steps, N, a, theta, hw);
    else forward_kernel<T, false, 0>(I, ts, u0, s0, S, u_last, s_last, m, U, steps, N, a, theta, hw);
  }
}

template <typename T>
void backward_dispatch(int64_t kind, const T* gS, int64_t gs_t, int64_t gs_n, const T* gU, const T* gSl,
                       const uint8_t* m, const T* U, T* gI, bool acc, bool into, int64_t steps, int64_t N, T a,
                       T theta, T p, bool zero, bool detach) {
  if (zero) {
    if (detach) backward_kind<T, true, true>(kind, gS, gs_t, gs_n, gU, gSl, m, U, gI, acc, into, steps, N, a, theta, p);
    else backward_kind<T, true, false>(kind, gS, gs_t, gs_n, gU, gSl, m, U, gI, acc, into, steps, N, a, theta, p);
  } else {
    if (detach) backward_kind<T, false, true>(kind, gS, gs_t, gs_n, gU, gSl, m, U, gI, acc, into, steps, N, a, theta,
                                              p);
    else backward_kind<T, false, false>(kind, gS, gs_t, gs_n, gU, gSl, m, U, gI, acc, into, steps, N, a, theta, p);
  }
}

std::vector<torch::Tensor> neuron_forward(torch::Tensor I, torch::Tensor u0, torch::Tensor s0, int64_t steps,
                                          bool is_static, double a, double theta, bool zero, int64_t save,
                                          double half_width) {
  const int64_t N = u0.numel();
  auto opts = I.options();
  auto S = torch::empty({steps, N}, opts);
  auto u_last = torch::empty({N}, opts), s_last = torch::empty({N}, opts);
  torch::Tensor saved = save == 1 ? torch::empty({steps, N}, opts.dtype(torch::kUInt8))
                      : save == 2 ? torch::empty({steps, N}, opts) : torch::empty({0}, opts);
  AT_DISPATCH_FLOATING_TYPES(I.scalar_type(), "neuron_forward", [&] {
    forward_dispatch<scalar_t>(I.data_ptr<scalar_t>(), is_static ? 0 : N, u0.data_ptr<scalar_t>(),
                               s0.data_ptr<scalar_t>(), S.data_ptr<scalar_t>(), u_last.data_ptr<scalar_t>(),
                               s_last.data_ptr<scalar_t>(), save == 1 ? saved.data_ptr<uint8_t>() : nullptr,
                               save == 2 ? saved.data_ptr<scalar_t>() : nullptr, steps, N, scalar_t(a),
                               scalar_t(theta), scalar_t(half_width), zero, save);
  });
  return {S, u_last, s_last, saved};
}

torch::Tensor neuron_backward(torch::Tensor gS, torch::Tensor gU_last, torch::Tensor gS_last, torch::Tensor saved,
                              bool is_static, double a, double theta, bool zero, bool detach, int64_t kind,
                              double p, bool into_saved) {
  // gS is [T, N] with any strides (an expanded scalar gradient, e.g. of spikes.sum(), is read in place).
  // into_saved: dL/dI overwrites the saved membrane U [T, N] (read row by row just before), no new buffer.
  const int64_t steps = gS.size(0), N = gS.size(1);
  const bool is_mask = saved.scalar_type() == torch::kUInt8;
  TORCH_CHECK(!into_saved || (!is_mask && !is_static && saved.scalar_type() == gS.scalar_type()),
              "into_saved needs the saved membrane of a non-static call");
  auto gI = into_saved ? saved
          : is_static ? torch::empty({N}, gS.options()) : torch::empty({steps, N}, gS.options());
  AT_DISPATCH_FLOATING_TYPES(gS.scalar_type(), "neuron_backward", [&] {
    backward_dispatch<scalar_t>(kind, gS.data_ptr<scalar_t>(), gS.stride(0), gS.stride(1),
                                gU_last.data_ptr<scalar_t>(), gS_last.data_ptr<scalar_t>(),
                                is_mask ? saved.data_ptr<uint8_t>() : nullptr,
                                is_mask ? nullptr : saved.data_ptr<scalar_t>(), gI.data_ptr<scalar_t>(), is_static,
                                into_saved, steps, N, scalar_t(a), scalar_t(theta), scalar_t(p), zero, detach);
  });
  return gI;
}
"""

_BASE = "spiketandem_neuron"
_CFLAGS = ("-O3", "-fopenmp", "-ffp-contract=off", "-fno-trapping-math", "-fno-math-errno")
_LDFLAGS = ("-fopenmp",)
_FUNCTIONS = ["neuron_forward", "neuron_backward"]
_module = None
_failed: str | None = None


def compile_flags() -> tuple[list[str], list[str]]:
    """(compiler flags, linker flags) of this machine's build: 8-wide vectors where the CPU has them."""
    import torch
    simd = ["-mavx2"] if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") else []
    return [*_CFLAGS, *simd], list(_LDFLAGS)


def environment() -> dict:
    """What a compiled kernel depends on besides its source and flags: the torch it links against (its
    install location and version) and the Python it is imported into (executable and version)."""
    import torch
    return {"torch_dir": os.path.dirname(os.path.abspath(torch.__file__)), "torch_version": torch.__version__,
            "torch_git": getattr(torch.version, "git_version", None),
            "python": os.path.realpath(sys.executable), "prefix": sys.prefix, "python_version": sys.version,
            "machine": platform.machine(), "cxx": os.environ.get("CXX")}


def build_key(source: str = _SOURCE, cflags=None, ldflags=None, env: dict | None = None) -> str:
    """16 hex digits of a hash of everything the build depends on (``environment()``, the source, the
    flags): two Python environments, or two versions of the kernel, never share a build folder."""
    if cflags is None or ldflags is None:
        default_c, default_l = compile_flags()
        cflags = default_c if cflags is None else cflags
        ldflags = default_l if ldflags is None else ldflags
    parts = {"source": source, "cflags": list(cflags), "ldflags": list(ldflags),
             "env": environment() if env is None else env}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cache_root() -> Path:
    """Where build folders live: ``$TORCH_EXTENSIONS_DIR/spiketandem`` if set, else
    ``$XDG_CACHE_HOME/torch_extensions/spiketandem`` (default ``~/.cache/...``)."""
    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        return Path(os.environ["TORCH_EXTENSIONS_DIR"]).expanduser() / "spiketandem"
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "torch_extensions" / "spiketandem"


def module_name(key: str) -> str:
    return f"{_BASE}_{key}"


def build_dir(source: str = _SOURCE, cflags=None, ldflags=None, env: dict | None = None) -> Path:
    """The build folder of this source with these flags in this environment (``build_key``); nothing is
    compiled or created."""
    return cache_root() / module_name(build_key(source, cflags, ldflags, env))


def is_built(folder: Path) -> bool:
    """Whether ``folder`` holds a finished build (its library): loading it then takes well under a second."""
    return (folder / f"{folder.name}.so").is_file()


def _last_build_seconds() -> float | None:
    """How long the most recent build on this machine took (any environment), from its build.json."""
    latest = None
    try:
        for info in cache_root().glob(f"{_BASE}_*/build.json"):
            mtime = info.stat().st_mtime
            if latest is None or mtime > latest[0]:
                latest = (mtime, info)
        return float(json.loads(latest[1].read_text())["seconds"]) if latest else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _notice(text: str) -> None:
    print(f"spiketandem: {text}", file=sys.stderr, flush=True)


def load():
    """The compiled module (built on first use into ``build_dir()``, one folder per Python environment,
    torch, source and flags; then loaded from there), or None if it cannot be built here (the reason is
    kept in ``failure()``).  Every real compilation is announced on stderr, with where and about how long."""
    global _module, _failed
    if _module is not None or _failed is not None:
        return _module
    if os.environ.get("SPIKETANDEM_NO_CPP"):
        _failed = "SPIKETANDEM_NO_CPP is set"
        return None
    try:
        from torch.utils.cpp_extension import load_inline
        cflags, ldflags = compile_flags()
        env = environment()
        folder = build_dir(_SOURCE, cflags, ldflags, env)
        announced = not is_built(folder)
        if announced:  # the first use in this environment waits for the compiler: say so, and for how long
            last = _last_build_seconds()
            estimate = f"the last build on this machine took {last:.0f} s" if last else "usually 1-3 minutes"
            _notice(f"compiling the fused CPU neuron kernel for this Python environment ({sys.executable}, torch "
                    f"{env['torch_version']}) into {folder} — once per environment and kernel version; {estimate}")
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _module = load_inline(name=folder.name, cpp_sources=[_SOURCE], functions=_FUNCTIONS,
                                  extra_cflags=list(cflags), extra_ldflags=list(ldflags),  # torch appends to them
                                  build_directory=str(folder),
                                  verbose=False)
        seconds = time.perf_counter() - t0
        if announced or seconds > 10:  # > 10 s: ninja rebuilt a library that was there (e.g. touched headers)
            _notice(f"fused CPU neuron kernel compiled in {seconds:.0f} s ({folder})")
            _write_build_info(folder, env, cflags, ldflags, seconds)
    except Exception as exc:  # no compiler, no ninja, a read-only cache: the torch loop takes over
        lines = str(exc).strip().splitlines() or [""]
        _failed = f"{type(exc).__name__}: {next((l for l in lines if 'error' in l), lines[-1]).strip()}"
        return None
    return _module


def _write_build_info(folder: Path, env: dict, cflags, ldflags, seconds: float) -> None:
    """build.json: which environment the folder is for (to tell folders apart) and how long it took."""
    try:
        tmp = folder / f"build.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"env": env, "cflags": cflags, "ldflags": ldflags, "seconds": round(seconds, 1),
                                   "built": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=2) + "\n")
        os.replace(tmp, folder / "build.json")
    except OSError:  # only the estimate for the next build is lost
        pass


def failure() -> str | None:
    return _failed
