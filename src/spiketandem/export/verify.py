"""Load a written NIR file in other simulators and compare them with spiketandem's own forward.

Per importer (our reference simulator, Norse, snnTorch, SpikingJelly — whichever import): the
accuracy on the given images (class scores = mean over T of the Output), how often its prediction
equals the student's, the largest difference of its output currents, and per neuron layer the total
spike count and the number of (sample, neuron) counts that differ from the student's.

How each one is run (NIR shapes have no batch axis):

- ``reference``: ``simulate_nir`` (this package), float64, the whole batch at once;
- ``norse``: ``norse.torch.from_nir(graph, dt)`` one sample at a time.  Its executor (nirtorch's
  deprecated ``GraphExecutor``) visits the graph depth-first, so in a graph where a node has several
  inputs (a residual addition) one of them is read from the previous step; for such graphs Norse's own
  node mapping is run through ``nirtorch.nir_to_torch`` (the interpreter snnTorch and SpikingJelly
  use), and the result says so (``loader``);
- ``snntorch``: ``snntorch.import_nir.import_from_nir(graph)``, one sample at a time (hidden states
  reset between samples); it refuses IF nodes with r != 1: export with ``flavour="snntorch"``;
- ``spikingjelly``: ``spikingjelly.activation_based.nir_exchange.import_from_nir(graph, dt)``, batched
  (its Flatten assumes a batch axis).
"""
from __future__ import annotations

import contextlib
import io
import warnings
from functools import partial
from pathlib import Path

import torch

from .nir_export import _need_nir, neuron_layers
from .nir_reference import simulate_nir
from .options import IMPORTERS


def _first(o):
    return o[0] if isinstance(o, (tuple, list)) else o


class _Counts:
    """Forward hooks that add up the spikes of the named modules of an imported model, per sample."""

    def __init__(self, model: torch.nn.Module, names: list[str]):
        modules = dict(model.named_modules())
        self.totals: dict[str, list] = {n: [] for n in names}
        self.current: dict[str, torch.Tensor | None] = {n: None for n in names}
        self.missing = [n for n in names if n not in modules]
        self.handles = [modules[n].register_forward_hook(self._hook(n)) for n in names if n in modules]

    def _hook(self, name):
        def hook(module, inputs, output):
            z = _first(output).detach().double()
            self.current[name] = z if self.current[name] is None else self.current[name] + z
        return hook

    def end_sample(self, batched: bool = False) -> None:
        for n, c in self.current.items():
            if c is not None:
                self.totals[n].append(c if batched else c.unsqueeze(0))
            self.current[n] = None

    def result(self) -> dict[str, torch.Tensor]:
        for h in self.handles:
            h.remove()
        return {n: torch.cat(v) for n, v in self.totals.items() if v}


def _has_joins(graph) -> bool:
    targets = [b for _, b in dict.fromkeys(map(tuple, graph.edges))]
    return len(targets) != len(set(targets))


def _quiet():
    """Importers print and warn freely (snnTorch prints to stdout): keep the command's output clean."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    import logging
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    stack.callback(logging.disable, previous)
    return stack


def _per_sample(model, x: torch.Tensor, T: int, counts: _Counts, reset=None) -> torch.Tensor:
    outputs = []
    with torch.no_grad():
        for b in range(x.shape[0]):
            if reset is not None:
                reset(model)
            state, steps = None, []
            for _ in range(T):
                y, state = model(x[b], state)
                steps.append(_first(y).detach().double())
            counts.end_sample()
            outputs.append(torch.stack(steps))
    return torch.stack(outputs, 1)  # [T, B, ...]


def _run_reference(graph, x, T, names):
    out, counts = simulate_nir(graph, x, T)
    return out, counts, {"loader": "spiketandem.export.simulate_nir (float64)"}


def norse_model(graph) -> tuple[torch.nn.Module, str]:
    """The NIR ``graph`` as a Norse module (called as ``model(x, state) -> (y, state)``, one sample at a time:
    NIR shapes carry no batch axis), and how it was loaded.  Graphs with joins (residual sums) go through
    ``nirtorch.nir_to_torch`` with Norse's node mapping, because ``norse.torch.from_nir``'s executor reads
    one input of a multi-input node from the previous step."""
    import nir
    import nirtorch
    import norse.torch as norse
    dt = float((graph.metadata or {}).get("dt", 1e-3))
    if not _has_joins(graph):
        return norse.from_nir(graph, dt=dt, ignore_warnings=True), "norse.torch.from_nir"
    from norse.torch.utils.import_nir import _import_norse_module
    mapper = partial(_import_norse_module, ignore_warnings=True, dt=dt)
    node_map = {cls: mapper for cls in (nir.Affine, nir.Conv2d, nir.Flatten, nir.Linear, nir.IF, nir.LIF,
                                        nir.CubaLIF, nir.SumPool2d)}
    return (nirtorch.nir_to_torch(graph, node_map), "nirtorch.nir_to_torch with Norse's node mapping "
            "(norse.torch.from_nir's executor reads one input of a multi-input node from the previous step)")


def _run_norse(graph, x, T, names):
    model, loader = norse_model(graph)
    counts = _Counts(model, names)
    out = _per_sample(model, x, T, counts)
    return out, counts.result(), {"loader": loader, **({"unhooked": counts.missing} if counts.missing else {})}


def _run_snntorch(graph, x, T, names):
    import snntorch
    from snntorch.import_nir import import_from_nir
    model = import_from_nir(graph)
    leaky = [m for m in model.modules() if isinstance(m, snntorch.SpikingNeuron)]

    def reset(_):
        for m in leaky:
            if hasattr(m, "reset_mem"):
                m.reset_mem()
    counts = _Counts(model, names)
    out = _per_sample(model, x, T, counts, reset)
    return out, counts.result(), {"loader": "snntorch.import_nir.import_from_nir (dt = 1e-4 s assumed)"}


def _run_spikingjelly(graph, x, T, names, batch_size: int = 128):
    from spikingjelly.activation_based.nir_exchange import import_from_nir
    dt = float((graph.metadata or {}).get("dt", 1e-4))
    model = import_from_nir(graph, dt=dt)
    counts = _Counts(model, names)
    outputs = []
    with torch.no_grad():
        for chunk in x.split(batch_size):
            state, steps = None, []
            for _ in range(T):
                y, state = model(chunk, state)
                steps.append(_first(y).detach().double())
            counts.end_sample(batched=True)
            outputs.append(torch.stack(steps))
    return torch.cat(outputs, 1), counts.result(), {"loader": "spikingjelly.activation_based.nir_exchange."
                                                              "import_from_nir"}


RUNNERS = {"reference": _run_reference, "norse": _run_norse, "snntorch": _run_snntorch,
           "spikingjelly": _run_spikingjelly}


@torch.no_grad()
def student_activity(student, x: torch.Tensor, T: int, batch_size: int = 256):
    """spiketandem's forward: output currents [T, B, classes] and each layer's spike counts [B, ...]."""
    outs, counts = [], {}
    for chunk in x.split(batch_size):
        ctx = student.context(T, chunk.shape[0], records={})
        outs.append(student.run(chunk, ctx).double())
        for name, s in ctx.records.items():
            counts.setdefault(name, []).append(s.sum(0).double())
    return torch.cat(outs, 1), {n: torch.cat(v) for n, v in counts.items()}


def verify_nir(path: str | Path, student, images: torch.Tensor, labels: torch.Tensor, T: int,
               importers=IMPORTERS) -> dict:
    """Run the NIR file at ``path`` in each importer on ``images`` (normalised, as the student sees them) for
    T steps and compare with ``student``; returns one JSON-ready dict (see the module docstring)."""
    nir = _need_nir()
    graph = nir.read(str(path))
    layer_of = neuron_layers(graph)
    x = images.detach().cpu().float()
    y = labels.detach().cpu()
    student = student.cpu().eval()
    ours_out, ours_counts = student_activity(student, x, T)
    ours_pred = ours_out.mean(0).argmax(1)
    result = {"T": int(T), "samples": int(x.shape[0]),
              "student_accuracy": float((ours_pred == y).double().mean()), "importers": {}}
    for name in importers:
        entry: dict = {}
        try:
            with _quiet():
                out, counts, info = RUNNERS[name](nir.read(str(path)), x, T, list(layer_of))
        except ImportError as e:
            entry = {"available": False, "error": f"not installed ({e})"}
        except Exception as e:  # an importer's refusal is a finding to report, not a crash
            entry = {"available": True, "error": f"{type(e).__name__}: {e}"}
        else:
            entry = {"available": True, **info, **_compare(out, counts, ours_out, ours_counts, ours_pred, y, layer_of)}
        result["importers"][name] = entry
    return result


def _compare(out, counts, ours_out, ours_counts, ours_pred, y, layer_of) -> dict:
    pred = out.mean(0).reshape(out.shape[1], -1).argmax(1)
    layers = {}
    for nir_name, layer in layer_of.items():
        mine = ours_counts[layer]
        theirs = counts.get(nir_name)
        if theirs is None:
            layers[nir_name] = {"layer": layer, "spikes_student": int(mine.sum()), "spikes": None}
            continue
        theirs = theirs.reshape(mine.shape)
        differ = int((theirs != mine).sum())
        layers[nir_name] = {"layer": layer, "spikes_student": int(mine.sum()), "spikes": int(theirs.sum()),
                            "counts_differing": differ, "neuron_samples": int(mine.numel()), "identical": differ == 0}
    scale = float(ours_out.abs().max()) or 1.0
    return {"accuracy": float((pred == y).double().mean()),
            "agreement_with_student": float((pred == ours_pred).double().mean()),
            "max_output_difference": float((out.reshape(ours_out.shape) - ours_out).abs().max()) / scale,
            "spike_counts_identical": all(v.get("identical", False) for v in layers.values()),
            "layers": layers}


def verify_table(result: dict) -> str:
    """A plain-text table of ``verify_nir``'s result."""
    lines = [f"verification on {result['samples']} test images, T={result['T']}: student accuracy "
             f"{100 * result['student_accuracy']:.2f}%",
             f"{'importer':<14}{'accuracy':>10}{'agree':>8}{'spike counts':>22}  notes"]
    for name, r in result["importers"].items():
        if "error" in r:
            lines.append(f"{name:<14}{'-':>10}{'-':>8}{'-':>22}  {r['error'][:200]}")
            continue
        layers = r["layers"].values()
        differ = sum(v.get("counts_differing") or 0 for v in layers)
        total = sum(v.get("neuron_samples") or 0 for v in layers)
        counts = "identical" if r["spike_counts_identical"] else f"{differ}/{total} differ"
        lines.append(f"{name:<14}{100 * r['accuracy']:>9.2f}%{100 * r['agreement_with_student']:>7.1f}%"
                     f"{counts:>22}  {r.get('loader', '')}")
    return "\n".join(lines)
