"""The SNN-friendly vision transformer (models/vit.py) and its spiking student: the teacher's operations, the
attention product in time against independent computations, the builder's refusals, SynOps, NIR's refusal and a
reloaded student."""
import pytest
import torch
from torch import nn

from spiketandem.errors import SpiketandemError
from spiketandem.metrics import count_ops
from spiketandem.models import MODELS, build_model
from spiketandem.models.vit import AttentionProduct
from spiketandem.neuron import NeuronConfig, RunContext
from spiketandem.student import (ATTENTION_TIMES, SpikingAttentionProduct, TeacherRefused, attention_products,
                                 build_student)


def tiny_vit(seed=0, **kw):
    torch.manual_seed(seed)
    return build_model("vit-tiny", 10, 1, 8, kw.pop("width", 0.25), **kw).eval()


def student_of(teacher, n=32, seed=1):
    images = torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    return build_student(teacher, NeuronConfig("if"), images[:2], calibration_images=images), images


def test_vit_in_the_zoo_has_only_operations_a_student_carries():
    assert {"vit-tiny", "vit-small"} <= set(MODELS)
    model = tiny_vit()
    kinds = {type(m) for m in model.modules()}
    assert not kinds & {nn.LayerNorm, nn.GELU, nn.Softmax, nn.ReLU, nn.MultiheadAttention}
    clips = [m for m in model.modules() if isinstance(m, nn.Hardtanh)]
    assert clips and all((m.min_val, m.max_val) == (0.0, 2.0) for m in clips)  # c = 2 unless --act-clip says
    assert all(m.max_val == 1.5 for m in build_model("vit-tiny", 10, 1, 8, act_clip=1.5).modules()
               if isinstance(m, nn.Hardtanh))
    assert model.patch_embed.kernel_size == (2, 2) and model.patch_embed.stride == (2, 2)
    assert model.dim == 16 and model.tokens == 16  # width 0.25 of 64 channels; 4 x 4 patches of 2 x 2 pixels
    assert build_model("vit-small", 10, 3, 32, 0.25).tokens == 64  # 4 x 4 patches of 32 x 32 images
    assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)


def test_vit_refuses_a_patch_that_does_not_divide_the_image():
    from spiketandem.models.vit import SpikingViT
    with pytest.raises(ValueError, match="patch size 3 must divide the image size 8"):
        SpikingViT(10, 1, 8, patch=3)
    with pytest.raises(SpiketandemError, match="cannot build vit-tiny"):
        build_model("vit-tiny", 10, 1, 7)  # 7 x 7 images: the default 2 x 2 patch does not divide them


def test_attention_product_is_the_per_head_sum_written_out():
    """A[b, h*d + e, i] = s * sum_j (sum_c q[b, h*d + c, i] k[b, h*d + c, j]) v[b, h*d + e, j], by loops."""
    torch.manual_seed(0)
    B, heads, d, N, s = 2, 2, 3, 5, 0.3
    q, k, v = (torch.rand(B, heads * d, N, dtype=torch.float64) for _ in range(3))
    expected = torch.zeros(B, heads * d, N, dtype=torch.float64)
    for b in range(B):
        for h in range(heads):
            for e in range(d):
                for i in range(N):
                    expected[b, h * d + e, i] = s * sum(
                        sum(q[b, h * d + c, i] * k[b, h * d + c, j] for c in range(d)) * v[b, h * d + e, j]
                        for j in range(N))
    torch.testing.assert_close(AttentionProduct(heads, s)(q, k, v), expected)


def product_in_time(time, q, k, v, T, heads=2, scale=0.5):
    product = SpikingAttentionProduct(heads, scale, time)
    product.ctx = RunContext(T=T, batch=q.shape[0] // T)
    try:
        return product(q, k, v)
    finally:
        product.ctx = None


def test_attention_product_in_time_matches_its_equations():
    """step: A[t] = s Q[t] K[t]^T V[t]; rate: s r_Q[t] r_K[t]^T r_V[t] with r[t] the running mean of steps 1..t;
    increment: its sums over steps 1..t equal t s r_Q[t] r_K[t]^T r_V[t]; each step computed on its own here."""
    torch.manual_seed(0)
    T, B, D, N = 4, 3, 4, 5
    q, k, v = ((torch.rand(T * B, D, N) < 0.4).double() * a for a in (1.0, 0.5, 2.0))  # spikes x amplitude
    plain = AttentionProduct(2, 0.5)
    by_step = lambda x: x.reshape(T, B, D, N)  # noqa: E731
    qs, ks, vs = by_step(q), by_step(k), by_step(v)
    step = by_step(product_in_time("step", q, k, v, T))
    rate = by_step(product_in_time("rate", q, k, v, T))
    increment = by_step(product_in_time("increment", q, k, v, T))
    for t in range(T):
        torch.testing.assert_close(step[t], plain(qs[t], ks[t], vs[t]))
        rq, rk, rv = (x[:t + 1].sum(0) / (t + 1) for x in (qs, ks, vs))
        torch.testing.assert_close(rate[t], plain(rq, rk, rv))
        torch.testing.assert_close(increment[:t + 1].sum(0), (t + 1) * plain(rq, rk, rv))
    assert not torch.allclose(step.mean(0), rate[-1])  # the definitions differ on correlated spike trains


def test_attention_time_is_checked_and_a_graded_product_needs_the_whole_window():
    with pytest.raises(SpiketandemError, match="'sometimes' is not one of step, rate, increment"):
        SpikingAttentionProduct(2, 0.5, "sometimes")
    q = torch.ones(2, 4, 3)
    product = SpikingAttentionProduct(2, 0.5, "rate")
    product.ctx = RunContext(T=1, batch=2, state_in={})
    with pytest.raises(SpiketandemError, match="needs the whole window in one call.*takes time 'step'"):
        product(q, q, q)


def test_student_of_a_vit_replaces_every_clipped_relu_and_keeps_the_product():
    teacher = tiny_vit()
    student, images = student_of(teacher)
    clips = [name for name, m in teacher.named_modules() if isinstance(m, nn.Hardtanh)]
    assert sorted(layer.path for layer in student.layers) == sorted(clips)
    products = attention_products(student)
    assert list(products) == ["blocks.0.attn.product", "blocks.1.attn.product"]
    assert all(p.time == "step" and p.heads == 4 and p.scale == 1 / 16 for p in products.values())
    layer = {info.name: info for info in student.layers}["blocks_0_attn_attn_act"]
    assert layer.modules == ["blocks.0.attn.product_bn", "blocks.0.attn.product"]  # a per-channel affine: no conv
    assert [tuple(p.shape) for p in student.layer_parameters("blocks_0_attn_attn_act")] == [(16,), (16,)]
    assert any(p is student.graph_module.position for p in student.layer_parameters("patch_act"))
    for time in ATTENTION_TIMES:
        student.set_attention_time(time)
        assert student(images[:4], 4).shape == (4, 4, 10)


def test_student_step_product_is_computed_from_each_steps_spikes():
    """The first block's product, recorded by a hook, equals s Q[t] K[t]^T V[t] of the recorded spikes x amplitude."""
    teacher = tiny_vit()
    student, images = student_of(teacher)
    seen = {}
    product = attention_products(student)["blocks.0.attn.product"]
    hook = product.register_forward_hook(lambda m, args, out: seen.update(out=out.detach()))
    ctx = RunContext(T=3, batch=4, records={})
    with torch.no_grad():
        student.run(images[:4], ctx)
    hook.remove()
    neurons = student.neurons
    spikes = {x: ctx.records[f"blocks_0_attn_{x}_act"] * neurons[f"blocks_0_attn_{x}_act"].amplitude for x in "qkv"}
    assert all(float(s.sum()) > 0 for s in spikes.values())
    out = seen["out"].reshape(3, 4, *seen["out"].shape[1:])
    for t in range(3):
        q, k, v = (spikes[x][t].double() for x in "qkv")
        per_head = torch.einsum("bhci,bhcj,bhej->bhei", *(x.reshape(4, 4, 4, 16) for x in (q, k, v))) / 16
        torch.testing.assert_close(out[t].double(), per_head.reshape(4, 16, 16), rtol=1e-5, atol=1e-5)


class ProductOfCurrents(nn.Module):
    """Q is an activation; K and V are currents: the product would multiply currents, not spikes."""

    def __init__(self):
        super().__init__()
        self.q, self.k = nn.Conv1d(2, 4, 1), nn.Conv1d(2, 4, 1)
        self.act, self.out_act = nn.ReLU(), nn.ReLU()
        self.product = AttentionProduct(2, 0.5)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        q = self.act(self.q(x))
        return self.head(self.out_act(self.product(q, self.k(x), self.k(x))).mean(2))


def test_builder_refuses_a_product_of_currents():
    with pytest.raises(TeacherRefused, match="AttentionProduct at module 'product': its Q, K and V are not all "
                                             "outputs of a ReLU"):
        build_student(ProductOfCurrents(), NeuronConfig(), torch.randn(2, 2, 5))


def test_synops_count_a_spike_by_spike_product_as_its_additions():
    """s (Q K^T) V at one step, per head: every co-active pair (q_ic, k_jc) is one addition into Q K^T, and every
    spike v_je is added into all N rows: sum_c (sum_i q_ic)(sum_j k_jc) + N sum v, counted by hand."""
    torch.manual_seed(0)
    T, B, heads, d, N = 2, 3, 2, 3, 5
    q, k, v = ((torch.rand(T * B, heads * d, N) < 0.5).float() * a for a in (0.7, 1.3, 2.0))
    product = SpikingAttentionProduct(heads, 0.5)
    counts, _ = count_ops(product, q, k, v, named=product, analog_inputs=False)
    split = lambda x: x.reshape(T * B, heads, d, N)  # noqa: E731  [.., c, i]
    qs, ks, vs = ((split(x) != 0).double() for x in (q, k, v))
    expected = float((qs.sum(-1) * ks.sum(-1)).sum() + N * vs.sum())
    assert counts.synops == {"SpikingAttentionProduct": expected}
    assert counts.total_macs() == 0
    teacher_counts, _ = count_ops(AttentionProduct(heads, 0.5), q, k, v, dense=True)
    assert teacher_counts.total_macs() == T * B * heads * (N * d * N + N * N * d)


def test_student_synops_name_the_product_and_rate_products_cost_macs():
    teacher = tiny_vit()
    student, images = student_of(teacher)
    counts, _ = count_ops(lambda x: student(x, 4), images[:8], named=student.graph_module)
    assert counts.synops["blocks.0.attn.product"] > 0 and "blocks.0.attn.product" not in counts.macs
    student.set_attention_time("rate")  # running rates are graded: their products are multiplications
    counts, _ = count_ops(lambda x: student(x, 4), images[:8], named=student.graph_module)
    assert counts.macs["blocks.0.attn.product"] > 0 and "blocks.0.attn.product" not in counts.synops


def test_nir_export_refuses_a_spiking_transformer_in_one_line():
    from spiketandem.export.nir_export import student_to_nir
    student, _ = student_of(tiny_vit())
    with pytest.raises(SpiketandemError) as error:
        student_to_nir(student)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("NIR export: the attention product at student node 'blocks_0_attn_product'")
    assert "no node for a product of two spike tensors" in message
    from spiketandem.export.nir_export import refuse_membrane_start
    student.set_membrane_init(0.5)  # the export command's first check: the transformer's refusal comes before it
    with pytest.raises(SpiketandemError, match="^NIR export: the attention product"):
        refuse_membrane_start(student)


def test_check_teacher_accepts_the_vit_and_names_nir_s_refusal_of_each_product():
    from spiketandem.teacher_check import check_teacher
    report = check_teacher(tiny_vit(), torch.randn(4, 1, 8, 8))
    assert report.ok
    nir = [f for f in report.of_kind("nir") if f.op == "AttentionProduct"]
    assert [f.where for f in nir] == ["module 'blocks.0.attn.product'", "module 'blocks.1.attn.product'"]


def test_a_rebuilt_student_computes_the_saved_definition_in_time():
    """load_student rebuilds the student from its teacher (the product in time 'step') and loads its state: the
    definition saved with it comes back, so the reloaded student computes the same network."""
    teacher = tiny_vit()
    student, images = student_of(teacher)
    student.set_attention_time("increment")
    with torch.no_grad():
        before = student(images[:4], 4)
    rebuilt, _ = student_of(teacher)
    assert all(p.time == "step" for p in attention_products(rebuilt).values())
    rebuilt.load_state_dict(student.state_dict())
    assert all(p.time == "increment" for p in attention_products(rebuilt).values())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(images[:4], 4), before)


def test_attention_time_is_a_run_setting_and_online_ltl_refuses_a_graded_one_before_any_work(tmp_path, capsys):
    """--attention-time sets every product of the run's student (the one setting behind the CLI, YAML and API);
    online LTL, which runs one step per call, refuses the graded definitions in one line before any data is read."""
    from spiketandem import cli
    from spiketandem.config import make_config
    from spiketandem.rules import configure, get_rule
    from spiketandem.rules.base import DataInfo
    for time in ATTENTION_TIMES:
        cfg = configure(make_config({"rule": "ltl-offline", "arch": "vit-tiny", "width": 0.25, "neuron": "if",
                                     "dataset": "digits", "attention_time": time}))
        rule = get_rule("ltl-offline")(cfg, DataInfo(10, 1, 8), tiny_vit(), torch.randn(16, 1, 8, 8))
        assert {p.time for p in attention_products(rule.model).values()} == {time}
    code = cli.main(["train", "--rule", "ltl-online", "--dataset", "digits", "--arch", "vit-tiny", "--neuron", "if",
                     "--attention-time", "rate", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--attention-time step" in err[0]
    assert not (tmp_path / "run").exists()


def test_export_refuses_a_spiking_transformer_run_before_any_retraining(tmp_path, capsys, monkeypatch):
    """`export --retarget zero-reset` of a transformer run: the one-line refusal comes before the LTL retraining
    (which would take minutes and then be refused), and nothing is written."""
    from spiketandem import cli
    from spiketandem.export import retarget
    run = tmp_path / "run"
    assert cli.main(["train", "--dataset", "digits", "--arch", "vit-tiny", "--width", "0.25", "--neuron", "if",
                     "--T", "2", "--eval-T", "2", "--epochs", "1", "--teacher-epochs", "1", "--n-train", "64",
                     "--n-test", "32", "--out", str(run), "--quiet"]) == 0

    def must_not_run(*args, **kwargs):
        raise AssertionError("retraining started before the refusal")
    monkeypatch.setattr(retarget, "retarget_zero_reset", must_not_run)
    capsys.readouterr()
    code = cli.main(["export", str(run), str(tmp_path / "s.nir"), "--retarget", "zero-reset"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "attention product" in err[0]
    assert not (tmp_path / "s.nir").exists()
