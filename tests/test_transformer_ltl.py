"""Offline LTL of a spiking transformer stays layer-local: the gradient of each layer's local loss reaches that
layer's parameters and no other, and its value on the attention layer (whose product has no weights) and on a
query layer equals an independent, hand-written forward and backward recursion."""
import torch

from spiketandem.config import make_config
from spiketandem.models import build_model
from spiketandem.neuron import RunContext
from spiketandem.rules import LTLOffline, configure
from spiketandem.rules.base import DataInfo

T, LEAK, P = 4, 0.9, 1.0
# which parameters each local loss trains (student parameter names; BatchNorm folded into the 1x1 convolutions)
TRAINS = {
    "patch_act": {"patch_embed.weight", "patch_embed.bias", "position"},
    "blocks_0_attn_q_act": {"blocks.0.attn.q.0.weight", "blocks.0.attn.q.0.bias"},
    "blocks_0_attn_k_act": {"blocks.0.attn.k.0.weight", "blocks.0.attn.k.0.bias"},
    "blocks_0_attn_v_act": {"blocks.0.attn.v.0.weight", "blocks.0.attn.v.0.bias"},
    # the product s(QK^T)V has no weights: its layer's loss trains the per-channel affine map after it
    "blocks_0_attn_attn_act": {"blocks.0.attn.product_bn.scale", "blocks.0.attn.product_bn.shift"},
    "blocks_0_attn_out_act": {"blocks.0.attn.proj.0.weight", "blocks.0.attn.proj.0.bias"},
    "blocks_0_mlp_act1": {"blocks.0.mlp.fc1.0.weight", "blocks.0.mlp.fc1.0.bias"},
    "blocks_0_mlp_act2": {"blocks.0.mlp.fc2.0.weight", "blocks.0.mlp.fc2.0.bias"},
}


def ltl_rule(backend="auto"):
    torch.manual_seed(0)
    teacher = build_model("vit-tiny", 10, 1, 8, 0.25).eval()
    teacher.blocks = teacher.blocks[:1]  # one block: every kind of layer, half the work
    cfg = configure(make_config({"T": T, "leak": LEAK, "surrogate_param": P, "neuron_backend": backend,
                                 "percentile": 90.0}))
    images = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    rule = LTLOffline(cfg, DataInfo(10, 1, 8), teacher, images)
    rule.setup(images, "cpu")
    return rule, images[:6]


def test_no_gradient_crosses_a_layer_boundary():
    """d L_l / d theta = 0 exactly for every parameter theta outside layer l, for every layer's local loss L_l
    (Q, K, V, the attention output, the residual joins, the MLP), and the readout's cross-entropy reaches only the
    readout; each loss does reach the parameters listed in TRAINS."""
    rule, x = ltl_rule()
    student = rule.model
    _, acts = rule.taps(x)
    ctx = rule.run_context(x.shape[0])
    logits = student.run(x, ctx).mean(0)
    losses = rule.local_losses(ctx.records, acts)
    losses["readout"] = torch.nn.functional.cross_entropy(logits, torch.arange(6) % 10)
    assert set(losses) == set(TRAINS) | {"readout"}
    named = dict(student.named_parameters())
    names = {id(p): n.removeprefix("graph_module.") for n, p in named.items()}
    for layer, loss in losses.items():
        own = student.readout_parameters() if layer == "readout" else student.layer_parameters(layer)
        own_names = {names[id(p)] for p in own}
        if layer != "readout":
            assert own_names == TRAINS[layer], layer
        grads = torch.autograd.grad(loss, list(named.values()), retain_graph=True, allow_unused=True)
        for (name, p), g in zip(named.items(), grads):
            if names[id(p)] in own_names:
                continue
            assert g is None or not bool(g.any()), f"the loss of {layer} reaches {name}"
        reached = [names[id(p)] for p, g in zip(named.values(), grads) if g is not None and bool(g.any())]
        assert reached and set(reached) <= own_names, (layer, reached)


def hand_error(current, target, theta):
    """Forward U[t] = a U[t-1] + I[t] - theta S[t-1], S[t] = 1[U[t] >= theta], then the full BPTT recursion
    e[t] = (d - theta e[t+1]) s'(U[t]) + a e[t+1] with d = -(2/T)(target - C/T) / numel and the boxcar
    s'(U) = 1[|U - theta| < p theta / 2] / (p theta): returns e = dL/dI [T, ...] for L = mean((target - C/T)^2)."""
    u, s = torch.zeros_like(current[0]), torch.zeros_like(current[0])
    U, S = [], []
    for t in range(T):
        u = LEAK * u + current[t] - theta * s
        s = (u >= theta).to(current.dtype)
        U.append(u)
        S.append(s)
    U, S = torch.stack(U), torch.stack(S)
    d = -(2 / T) * (target - S.sum(0) / T) / target.numel()
    surrogate = ((U - theta).abs() < P * theta / 2).to(current.dtype) / (P * theta)
    e, e_next = torch.zeros_like(current), torch.zeros_like(current[0])
    for t in reversed(range(T)):
        e[t] = (d - theta * e_next) * surrogate[t] + LEAK * e_next
        e_next = e[t]
    return e, S


def test_attention_and_query_losses_have_the_hand_gradient():
    """The attention layer: I[t] = g * P[t] + h per channel with P[t] = s Q[t] K[t]^T V[t] (recomputed here from
    the recorded spikes x amplitude, per head); dL/dg = sum e P, dL/dh = sum e.  The query layer: I[t] = W X[t] + b
    (a 1x1 convolution of the patch layer's spikes x amplitude); dL/dW = sum e X^T, dL/db = sum e."""
    rule, x = ltl_rule(backend="reference")
    student, neurons = rule.model, rule.model.neurons
    _, acts = rule.taps(x)
    ctx = RunContext(T=T, batch=6, detach=True, records={})
    student.run(x, ctx)
    losses = rule.local_losses(ctx.records, acts)
    spikes = {name: (r.double() * float(neurons[name].amplitude)) for name, r in ctx.records.items()}

    attn = "blocks_0_attn_attn_act"
    affine = student.graph_module.get_submodule("blocks.0.attn.product_bn")
    q, k, v = (spikes[f"blocks_0_attn_{n}_act"].reshape(T, 6, 4, 4, 16) for n in "qkv")  # [T, B, head, c, token]
    product = torch.einsum("tbhci,tbhcj,tbhej->tbhei", q, k, v).reshape(T, 6, 16, 16) / 16
    g, h = (p.detach().double().reshape(1, 1, -1, 1) for p in (affine.scale, affine.shift))
    target = rule.targets.target(attn, acts[attn], update=False).double()
    e, S = hand_error(g * product + h, target, float(neurons[attn].threshold))
    torch.testing.assert_close(S, ctx.records[attn].double())  # the hand forward is the student's forward
    grads = torch.autograd.grad(losses[attn], [affine.scale, affine.shift], retain_graph=True)
    expected = ((e * product).sum((0, 1, 3)), e.sum((0, 1, 3)))
    assert expected[0].abs().sum() > 0
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-7)

    query = "blocks_0_attn_q_act"
    conv = student.graph_module.get_submodule("blocks.0.attn.q.0")
    inputs = spikes["patch_act"].reshape(T, 6, 16, 16)  # [T, B, channel, token]
    W, b = conv.weight.detach().double()[..., 0], conv.bias.detach().double()
    target = rule.targets.target(query, acts[query], update=False).double()
    e, S = hand_error(torch.einsum("oc,tbcn->tbon", W, inputs) + b.reshape(1, 1, -1, 1), target,
                      float(neurons[query].threshold))
    torch.testing.assert_close(S, ctx.records[query].double())
    grads = torch.autograd.grad(losses[query], [conv.weight, conv.bias])
    expected = (torch.einsum("tbon,tbcn->oc", e, inputs).unsqueeze(-1), e.sum((0, 1, 3)))
    assert expected[0].abs().sum() > 0
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-7)


def test_online_ltl_steps_a_transformer_with_the_per_step_product_and_refuses_a_graded_one():
    """Online LTL runs the student one step per call: the per-step product needs nothing from earlier steps and
    trains; a product on running rates is refused before the first epoch, in one line naming the fix."""
    import pytest

    from spiketandem.errors import SpiketandemError
    from spiketandem.rules.ltl_online import LTLOnline

    torch.manual_seed(0)
    teacher = build_model("vit-tiny", 10, 1, 8, 0.25).eval()
    teacher.blocks = teacher.blocks[:1]
    cfg = configure(make_config({"rule": "ltl-online", "T": T, "neuron": "if"}))
    images = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    rule = LTLOnline(cfg, DataInfo(10, 1, 8), teacher, images)
    rule.setup(images, "cpu")
    before = {n: p.detach().clone() for n, p in rule.model.named_parameters()}
    optimizer = torch.optim.Adam(rule.optim_parameters(), 1e-3)
    logs = rule.train_step(images[:8], torch.arange(8) % 10, optimizer, 0)
    assert torch.isfinite(torch.tensor(logs["loss"]))
    moved = {n for n, p in rule.model.named_parameters() if not torch.equal(p, before[n])}
    assert "graph_module.blocks.0.attn.product_bn.scale" in moved  # the attention layer's own loss trained it
    rule.model.set_attention_time("increment")
    with pytest.raises(SpiketandemError, match="one step at a time.*defined in time 'increment'.*set it to 'step'"):
        rule.setup(images, "cpu")
