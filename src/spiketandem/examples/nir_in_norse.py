"""Read an exported student back with `nir.read` and run it in Norse, next to spiketandem's own
reference simulation of the same NIR graph.

    python -m spiketandem.examples.quickstart --out student.nir
    python -m spiketandem.examples.nir_in_norse student.nir     # needs: pip install nir norse
"""
import argparse
import warnings

import nir
import torch

from spiketandem.export import neuron_node_names, simulate_nir
from spiketandem.export.verify import norse_model


def run_in_norse(graph, x: torch.Tensor, T: int) -> tuple[torch.Tensor, dict]:
    """The graph in Norse (``norse_model``: residual joins included), one sample at a time (NIR shapes
    carry no batch axis); returns the output [T, B, classes] and the spike count of each neuron node."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _ = norse_model(graph)
    counts = {}
    for name, module in model.named_modules():
        if type(module).__name__ in ("LIFBoxCell", "IAFCell"):
            module.register_forward_hook(
                lambda m, i, o, name=name: counts.__setitem__(name, counts.get(name, 0) + int(o[0].sum())))
    outputs = []
    with torch.no_grad():
        for sample in x:
            state, steps = None, []
            for _ in range(T):
                y, state = model(sample, state)  # the analog image is a constant input current
                steps.append(y)
            outputs.append(torch.stack(steps))
    return torch.stack(outputs, 1), counts


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("nir_file")
    p.add_argument("--T", type=int, default=8)
    args = p.parse_args(argv)
    graph = nir.read(args.nir_file)
    print({k: v for k, v in graph.metadata.items() if k in ("dt", "reset", "spike_condition")})
    x = torch.randn(4, *graph.nodes["input"].input_type["input"])  # stand-in for normalised images
    norse_out, norse_counts = run_in_norse(graph, x, args.T)
    ref_out, ref_counts = simulate_nir(graph, x, args.T)
    for name in neuron_node_names(graph):
        print(f"{name}: Norse {norse_counts[name]} spikes, reference {int(ref_counts[name].sum())}")
    print("same predictions:", torch.equal(norse_out.mean(0).argmax(1), ref_out.mean(0).argmax(1)))
    return norse_counts, ref_counts


if __name__ == "__main__":
    main()
