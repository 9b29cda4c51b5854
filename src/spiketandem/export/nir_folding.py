"""Folding the translated graph's scales into weights (``W (A S) + b = (A W) S + b``, forward into the next weight
layer or back into the one before), and writing the scales that meet no weight as diagonal 1x1 layers."""
from __future__ import annotations

import math

import torch

from ..errors import SpiketandemError

from .nir_graph import _Graph, _Node, _per_channel


def _fold_into_consumer(node: _Node, s: torch.Tensor, in_shape: tuple) -> bool:
    """W (s x) = (W s) x for a conv/affine consumer; False when s varies within an input channel."""
    w = node.params["weight"]
    if node.kind == "affine":
        node.params["weight"] = w * (s.reshape(()) if s.dim() == 0 else s.expand(in_shape).reshape(1, -1))
        return True
    per = _per_channel(s, in_shape)
    if per is None:
        return False
    groups = node.params["groups"]
    out, per_group = w.shape[0], w.shape[1]
    channel = (torch.arange(out) // (out // groups)).unsqueeze(1) * per_group + torch.arange(per_group)
    node.params["weight"] = w * per[channel].reshape(out, per_group, *([1] * (w.dim() - 2)))
    return True


def _fold_into_producer(node: _Node, s: torch.Tensor, shift, shape: tuple) -> bool:
    """s (W x + b) + shift = (s W) x + (s b + shift) for a conv/affine producer."""
    if node.kind == "affine":
        per = s.expand(shape).reshape(-1) if s.dim() else s.expand(shape[0]).clone()
        sh = torch.zeros(shape[0], dtype=torch.float64) if shift is None else shift.expand(shape).reshape(-1)
    else:
        per = _per_channel(s, shape)
        sh = torch.zeros(shape[0], dtype=torch.float64) if shift is None else _per_channel(shift, shape)
        if per is None or sh is None:
            return False
    w = node.params["weight"]
    node.params["weight"] = w * per.reshape(-1, *([1] * (w.dim() - 1)))
    node.params["bias"] = node.params["bias"] * per + sh
    return True


def _through_flatten(t, in_shape):
    """A scale/shift after flatten, given it before (broadcastable to ``in_shape``)."""
    return t if t is None or t.dim() == 0 else t.expand(in_shape).reshape(-1).clone()


def _in_float64(g: _Graph) -> None:
    """Every scale node's scale and shift as float64, the dtype of the weights they fold into: the graph's
    translation writes some constant factors (average pooling's 1/k, an addition's alpha) as float32 scalars, and
    one that meets no weight is written into a float64 diagonal weight by index, which needs matching dtypes."""
    for node in g.nodes.values():
        if node.kind == "scale":
            for key in ("scale", "shift"):
                if isinstance(node.params.get(key), torch.Tensor):
                    node.params[key] = node.params[key].to(torch.float64)


def _fold_scales(g: _Graph) -> None:
    """Fold every scale node into a neighbouring weight where the algebra allows; repeat until none moves."""
    _in_float64(g)
    changed = True
    while changed:
        changed = False
        for name in list(g.nodes):
            node = g.nodes.get(name)
            if node is None or node.kind != "scale":
                continue
            if _fold_step(g, name, node):
                changed = True


def _fold_step(g: _Graph, name: str, node: _Node) -> bool:
    s, shift = node.params["scale"], node.params["shift"]
    users = g.consumers(name)
    if not users:
        return False
    # 1. the identity
    if bool((s == 1).all()) and shift is None and len(node.inputs) == 1 and g.can_remove(name):
        g.remove(name)
        return True
    # 2. two scales in a row
    if len(users) == 1 and g.nodes[users[0]].kind == "scale" and g.nodes[users[0]].inputs == [name]:
        nxt = g.nodes[users[0]]
        t, tshift = nxt.params["scale"], nxt.params["shift"]
        nxt.params["scale"] = s * t
        nxt.params["shift"] = (None if shift is None and tshift is None else
                               (0 if shift is None else shift * t) + (0 if tshift is None else tshift))
        nxt.inputs = list(node.inputs)
        del g.nodes[name]
        return True
    moved = False
    # 3. forward into weight consumers whose only input this is (a shift only into an affine)
    for u in users:
        c = g.nodes[u]
        if c.inputs != [name] or c.kind not in ("conv", "affine"):
            continue
        if shift is not None:
            if c.kind != "affine":
                continue
            c.params["bias"] = c.params["bias"] + c.params["weight"] @ shift.expand(node.shape).reshape(-1)
        if _fold_into_consumer(c, s, node.shape):
            c.inputs = list(node.inputs)
            moved = True
    # 4. forward through sum pooling / flatten consumers whose only input this is
    for u in g.consumers(name):
        c = g.nodes[u]
        if c.inputs != [name] or c.kind not in ("sumpool", "flatten"):
            continue
        if c.kind == "sumpool":
            if _per_channel(s, node.shape) is None or (shift is not None and _per_channel(shift, node.shape) is None):
                continue
            k = math.prod(c.params["kernel"])
            new_s = s if s.dim() == 0 else _per_channel(s, node.shape).reshape(-1, 1, 1)
            new_shift = None if shift is None else _per_channel(shift, node.shape).reshape(-1, 1, 1) * k
        else:
            new_s, new_shift = _through_flatten(s, node.shape), _through_flatten(shift, node.shape)
        after = g.consumers(u)
        c.inputs = list(node.inputs)
        moved_scale = g.add("scale", c.shape, [u], node.where, scale=new_s, shift=new_shift)
        g.nodes[moved_scale].index = c.index  # keep the creation order of its place
        for a in after:
            g.replace_input(a, u, [moved_scale])
        moved = True
    if not g.consumers(name):
        del g.nodes[name]
        return True
    if moved:
        return True
    # 5. back into the weight layer that produced it (through sum pooling / flatten used only here)
    if len(node.inputs) != 1:
        return False
    chain, cur, t, tshift = [], node.inputs[0], s, shift
    while g.nodes[cur].kind in ("sumpool", "flatten") and len(g.consumers(cur)) == 1 and len(g.nodes[cur].inputs) == 1:
        below = g.nodes[g.nodes[cur].inputs[0]].shape
        if g.nodes[cur].kind == "flatten":  # back to per-channel form of the unflattened shape
            t = t if t.dim() == 0 else _per_channel(t.reshape(below), below)
            tshift = tshift if tshift is None or tshift.dim() == 0 else _per_channel(tshift.reshape(below), below)
            if t is None or (shift is not None and tshift is None):
                return False
            t = t if t.dim() == 0 else t.reshape(-1, *([1] * (len(below) - 1)))
            tshift = tshift if tshift is None or tshift.dim() == 0 else tshift.reshape(-1, *([1] * (len(below) - 1)))
        else:
            if tshift is not None:
                tshift = tshift / math.prod(g.nodes[cur].params["kernel"])
        chain.append(cur)
        cur = g.nodes[cur].inputs[0]
    producer = g.nodes[cur]
    if producer.kind not in ("conv", "affine") or len(g.consumers(cur)) != 1:
        return False
    if not _fold_into_producer(producer, t, tshift, producer.shape):
        return False
    g.remove(name)
    return True


def _materialise(g: _Graph) -> None:
    """Scale nodes that meet no weight become a 1x1 conv (or affine) with the scale on the diagonal."""
    _in_float64(g)
    for name, node in list(g.nodes.items()):
        if node.kind != "scale":
            continue
        shape = node.shape
        s, shift = node.params["scale"], node.params["shift"]
        if len(shape) == 1:
            weight = torch.diag(s.expand(shape).reshape(-1).clone())
            bias = torch.zeros(shape[0], dtype=torch.float64) if shift is None else shift.expand(shape).reshape(-1)
            g.nodes[name] = _Node("affine", shape, node.inputs, node.where,
                                  {"weight": weight, "bias": bias.clone(), "role": "scale"}, node.index)
            continue
        per = _per_channel(s, shape)
        sh = torch.zeros(shape[0], dtype=torch.float64) if shift is None else _per_channel(shift, shape)
        if per is None or sh is None:
            raise SpiketandemError(f"NIR export: the scale at student node {node.where!r} varies within a channel, "
                                   "which no conv/affine NIR node expresses")
        dims = len(shape) - 1
        weight = torch.zeros(shape[0], shape[0], *([1] * dims), dtype=torch.float64)
        weight[torch.arange(shape[0]), torch.arange(shape[0])] = per.reshape(-1, *([1] * dims))
        g.nodes[name] = _Node("conv", shape, node.inputs, node.where,
                              {"weight": weight, "bias": sh.clone(), "stride": (1,) * dims, "padding": (0,) * dims,
                               "dilation": (1,) * dims, "groups": 1, "in_shape": shape, "role": "scale"}, node.index)


# ---- NIR nodes --------------------------------------------------------------------------------------------
