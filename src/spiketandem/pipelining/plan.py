"""Where the layers go: per-layer costs measured on a warm-up batch, a balanced contiguous partition,
and, for every stage, how it gets its teacher activations.

``measure_layers`` cuts the student and the teacher after *every* neuron layer and times, on one batch,
each layer's training work (its segment's forward over T steps, its local loss -- plus the readout's
cross-entropy for the last -- and the backward) and each layer's teacher segment (forward, no grad).
Nothing is updated: gradients are dropped and the targets are read without updating a running y_norm.

``balance`` splits the layers into S contiguous stages minimising the most expensive stage (the
pipeline's throughput is one batch per slowest stage).

``teacher_modes``: stage s > 0 needs the teacher's activations at its layers.  It runs the teacher's
segment of its own layers, on the teacher values at its first boundary, which it gets either

- ``relay``: sent by stage s-1 with the spikes (float32, ``bytes x seconds per byte`` as measured
  between two ranks), or
- ``recompute``: computed by itself, running the teacher's prefix (the segments of stages 0..s-1) from
  the batch, which every rank has (the measured teacher time of those layers).

Whichever is cheaper, per stage.  (A third way, the first stage running the whole teacher and sending
every stage its activations, sends more -- every layer's activation, not one boundary's -- and piles
the whole teacher on stage 0, so it is never the cheaper one.)
"""
from __future__ import annotations

import time

import torch

from .graph import cut_student, cut_teacher


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def placeholder_name(gm) -> str:
    return next(n.name for n in gm.graph.nodes if n.op == "placeholder")


def measure_layers(inner, x: torch.Tensor, y: torch.Tensor, context, repeats: int = 5) -> dict:
    """Per-layer seconds of training (``student``) and of the teacher (``teacher``) on batch ``x``, and the
    shapes of every value of both graphs (for the messages).  ``context``: the training step's context
    factory (autocast).  Each time is the fastest of ``repeats`` rounds: other work on a shared machine
    only ever adds time, and a partition balanced on disturbed times is unbalanced."""
    student, taps = inner.model, inner.taps
    names = [info.name for info in student.layers]
    layer_of = {name: i for i, name in enumerate(names)}
    scut = cut_student(student, layer_of, len(names))
    tcut = cut_teacher(taps, layer_of, len(names))
    sx, tx = placeholder_name(student.graph_module), placeholder_name(taps.graph_module)
    T, B = inner.cfg.T, x.shape[0]
    online = hasattr(inner, "runner")  # ltl-online: its own context and per-step loss (no run_context)
    times = {"student": [[] for _ in names], "teacher": [[] for _ in names]}
    spike_shapes = {}
    params = [p for p in student.parameters()]
    rng = torch.get_rng_state()
    was_training = student.training
    student.train(True)
    try:
        for rep in range(repeats + 1):  # the first round warms up (allocations, kernel choice) and is not kept
            values = {sx: student.encode(x, T)}
            tvalues = {tx: x.mean(1) if x.dim() == 5 else x}
            for i, name in enumerate(names):
                with context():
                    _sync(x.device)
                    t0 = time.perf_counter()
                    with torch.no_grad():
                        tcut.segments[i].run(tvalues)
                    _sync(x.device)
                    t1 = time.perf_counter()
                    ctx = inner.run_context(B, record_names={name}) if not online else \
                        inner.context(B, T, detach=True, records={}, record_names={name})
                    scut.segments[i].run(values, ctx)
                    spike_shapes[name] = tuple(ctx.records[name].shape[2:])
                    act = tvalues[tcut.taps[name]]
                    if online:  # timed as a whole window: the same work per layer as its T one-step updates
                        rate = ctx.records[name].sum(0) / T
                        loss = torch.nn.functional.mse_loss(rate, inner.targets.target(name, act, update=False))
                    else:
                        with only_active(inner, [name]):
                            loss = sum(inner.local_losses(ctx.records, {name: act}, update=False).values())
                    if i == len(names) - 1:
                        out = values[scut.segments[i].outputs[-1]]
                        logits = out.reshape(T, B, *out.shape[1:]).mean(0)
                        loss = loss + inner.readout_loss(logits, y, tvalues[tcut.logits])
                    if torch.is_tensor(loss) and loss.requires_grad:
                        loss.backward()
                    _sync(x.device)
                    t2 = time.perf_counter()
                if rep:
                    times["teacher"][i].append(t1 - t0)
                    times["student"][i].append(t2 - t1)
        shapes = {name: tuple(v.shape) for name, v in values.items() if torch.is_tensor(v)}
        tshapes = {name: tuple(v.shape) for name, v in tvalues.items() if torch.is_tensor(v)}
    finally:
        for p in params:
            p.grad = None
        student.train(was_training)
        torch.set_rng_state(rng)
    return {"layers": names, "student": [min(t) for t in times["student"]],
            "teacher": [min(t) for t in times["teacher"]], "batch": B,
            "shapes": shapes, "teacher_shapes": tshapes, "spike_shapes": spike_shapes}


class only_active:
    """Restrict the rule's ``active`` layers (whose local losses it computes) for one call."""

    def __init__(self, rule, names):
        self.rule, self.names = rule, list(names)

    def __enter__(self):
        self.saved = self.rule.active
        self.rule.active = self.names

    def __exit__(self, *exc):
        self.rule.active = self.saved



def balance(costs: list[float], stages: int) -> list[int]:
    """The stage of each layer: ``stages`` contiguous groups (none empty) minimising the largest sum."""
    n = len(costs)
    prefix = [0.0]
    for c in costs:
        prefix.append(prefix[-1] + c)
    inf = float("inf")
    # best[k][i]: the smallest possible largest sum splitting the first i layers into k groups
    best = [[inf] * (n + 1) for _ in range(stages + 1)]
    cut_at = [[0] * (n + 1) for _ in range(stages + 1)]
    best[0][0] = 0.0
    for k in range(1, stages + 1):
        for i in range(k, n + 1):
            for j in range(k - 1, i):
                value = max(best[k - 1][j], prefix[i] - prefix[j])
                if value < best[k][i] - 1e-15:
                    best[k][i], cut_at[k][i] = value, j
    stage_of, i = [0] * n, n
    for k in range(stages, 0, -1):
        j = cut_at[k][i]
        for layer in range(j, i):
            stage_of[layer] = k - 1
        i = j
    return stage_of


def teacher_modes(stage_of: list[int], teacher_cost: list[float], boundary_bytes: list[int],
                  seconds_per_byte: float) -> list[str]:
    """For each stage: "first" (stage 0, which has the batch), else "relay" or "recompute", the cheaper
    by the measured costs (``boundary_bytes[b]``: teacher bytes crossing boundary b per batch)."""
    modes = ["first"]
    for s in range(1, max(stage_of) + 1):
        prefix = sum(c for c, st in zip(teacher_cost, stage_of) if st < s)
        relay = boundary_bytes[s - 1] * seconds_per_byte
        modes.append("relay" if relay <= prefix else "recompute")
    return modes
