"""An SNN-friendly vision transformer: every operation is one a spiking student can carry.

Tokens are kept channels-first, ``[B, D, N]`` (D channels, N patches), so that every token-wise linear map is a
1x1 ``nn.Conv1d`` followed by ``nn.BatchNorm1d`` (foldable into it), as in Spikformer (Zhou et al. 2023):

    patches   X_0 = relu_c(BN(Conv_p(image)) + P)                    (p x p patches, learned position P)
    block     Q = relu_c(BN(W_q X)),  K = relu_c(BN(W_k X)),  V = relu_c(BN(W_v X))
              A = relu_c(BN(s * (Q_h K_h^T) V_h))   per head h           (``AttentionProduct``: no softmax)
              X' = relu_c(BN(W_o A) + X)                               (residual joined before the activation)
              H = relu_c(BN(W_1 X')),  X'' = relu_c(BN(W_2 H) + X')
    head      logits = W_c mean_n(X_L)

with relu_c(z) = min(max(z, 0), c) the zoo's clipped ReLU (``nn.Hardtanh(0, c)``, c = 2 unless ``--act-clip`` says
otherwise) and s = 1/N a fixed scale.  What changes against a standard ViT (LayerNorm, GELU, softmax attention,
residual sums outside the activations), and why each is carried by a spiking student:

- LayerNorm -> BatchNorm: normalises with running statistics, a per-channel affine map at inference that folds into
  the preceding 1x1 convolution (a BatchNorm after the attention product, which follows no weight layer, stays a
  per-channel affine map in the student);
- GELU -> clipped ReLU: a neuron's rate times its amplitude is a ReLU clipped at the amplitude;
- softmax(QK^T/sqrt(d))V -> s (Q K^T) V on non-negative Q, K, V (Spikformer's spiking self-attention): the product
  of three activations, each a spike train in the student, so every multiplication is a coincidence of spikes (an
  addition), and the fixed scale folds into the BatchNorm after it;
- the residual join x + f(x) happens before an activation (as in the zoo's ResNet-20), so that every tensor passed
  between blocks is an activation: spikes in the student.

``AttentionProduct`` is one module so that the student builder sees the product as one operation (the spiking form,
``student.SpikingAttentionProduct``, defines it in time).
"""
from __future__ import annotations

import torch
from torch import nn


class AttentionProduct(nn.Module):
    """Softmax-free multi-head attention of three activations ``[B, D, N]`` (D = heads * d channels, N tokens):

        A_h = s * (Q_h K_h^T) V_h,    Q_h, K_h, V_h in R^{N x d} the rows of head h,

    returned as ``[B, D, N]``.  Its only parameter is the fixed scale s (a float, not trained).  Operation counters
    attribute its products to it as to a weight layer (``counted_as_layer``)."""

    counted_as_layer = True

    def __init__(self, heads: int, scale: float):
        super().__init__()
        if heads < 1:
            raise ValueError(f"heads must be >= 1, got {heads}")
        self.heads, self.scale = int(heads), float(scale)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, scale={self.scale:g}"

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """[B, D, N] -> [B, heads, N, d]."""
        b, d, n = x.shape
        if d % self.heads:
            raise ValueError(f"{d} channels do not split into {self.heads} heads")
        return x.reshape(b, self.heads, d // self.heads, n).transpose(-1, -2)

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        """[B, heads, N, d] -> [B, D, N]."""
        b, h, n, d = x.shape
        return x.transpose(-1, -2).reshape(b, h * d, n)

    def product(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """s (Q K^T) V on split heads ``[B, heads, N, d]``."""
        return (q @ k.transpose(-1, -2)) @ v * self.scale

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return self.merge(self.product(self.split(q), self.split(k), self.split(v)))


def _conv_bn(channels_in: int, channels_out: int) -> nn.Sequential:
    """A token-wise linear map W x (1x1 convolution, no bias) and its BatchNorm."""
    return nn.Sequential(nn.Conv1d(channels_in, channels_out, 1, bias=False), nn.BatchNorm1d(channels_out))


class SpikingSelfAttention(nn.Module):
    """Q, K, V = relu(BN(W x)); A = relu(BN(s (Q K^T) V)) per head; returns relu(BN(W_o A) + x)."""

    def __init__(self, dim: int, heads: int, tokens: int):
        super().__init__()
        self.q, self.k, self.v = (_conv_bn(dim, dim) for _ in range(3))
        self.q_act, self.k_act, self.v_act = nn.ReLU(), nn.ReLU(), nn.ReLU()
        self.product = AttentionProduct(heads, 1.0 / tokens)
        self.product_bn = nn.BatchNorm1d(dim)
        self.attn_act = nn.ReLU()
        self.proj = _conv_bn(dim, dim)
        self.out_act = nn.ReLU()

    def forward(self, x):
        q, k, v = self.q_act(self.q(x)), self.k_act(self.k(x)), self.v_act(self.v(x))
        a = self.attn_act(self.product_bn(self.product(q, k, v)))
        return self.out_act(self.proj(a) + x)


class MLPBlock(nn.Module):
    """H = relu(BN(W_1 x)); returns relu(BN(W_2 H) + x)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act1 = _conv_bn(dim, hidden), nn.ReLU()
        self.fc2, self.act2 = _conv_bn(hidden, dim), nn.ReLU()

    def forward(self, x):
        return self.act2(self.fc2(self.act1(self.fc1(x))) + x)


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, tokens: int):
        super().__init__()
        self.attn = SpikingSelfAttention(dim, heads, tokens)
        self.mlp = MLPBlock(dim, hidden)

    def forward(self, x):
        return self.mlp(self.attn(x))


def patch_size_for(image_size: int) -> int:
    """The default patch: 2 pixels up to 16 x 16 images (8 x 8 digits: 16 tokens), 4 above (32 x 32: 64 tokens)."""
    return 2 if image_size <= 16 else 4


class SpikingViT(nn.Module):
    """The SNN-friendly vision transformer of the module docstring.

    ``dim`` channels per token (times ``width``, rounded to a multiple of ``heads``), ``depth`` blocks, ``heads``
    heads, an MLP of ``mlp_ratio * dim`` hidden channels, ``patch`` x ``patch`` patches (default
    ``patch_size_for(image_size)``; it must divide the image size).  Built with ReLUs; the zoo clips them
    (``build_model``: c = 2 unless ``act_clip`` is given)."""

    def __init__(self, num_classes=10, in_channels=3, image_size=32, width=1.0, *, dim=64, depth=2, heads=4,
                 mlp_ratio=2.0, patch=None):
        super().__init__()
        patch = patch_size_for(image_size) if patch is None else int(patch)
        if patch < 1 or image_size % patch:
            raise ValueError(f"the patch size {patch} must divide the image size {image_size}")
        dim = max(heads, int(round(dim * width / heads)) * heads)
        side = image_size // patch
        self.dim, self.depth, self.heads, self.patch, self.tokens = dim, depth, heads, patch, side * side
        self.patch_embed = nn.Conv2d(in_channels, dim, patch, stride=patch, bias=False)
        self.patch_bn = nn.BatchNorm2d(dim)
        self.position = nn.Parameter(torch.zeros(1, dim, side, side))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.patch_act = nn.ReLU()
        hidden = max(1, int(round(dim * mlp_ratio)))
        self.blocks = nn.Sequential(*(Block(dim, heads, hidden, self.tokens) for _ in range(depth)))
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_act(self.patch_bn(self.patch_embed(x)) + self.position)
        x = self.blocks(x.flatten(2))
        return self.head(self.pool(x).flatten(1))


VIT_PLANS = {  # name -> (dim, depth, heads, mlp_ratio) at width 1
    "vit-tiny": (64, 2, 4, 2.0),
    "vit-small": (128, 4, 4, 2.0),
}
VIT_ACT_CLIP = 2.0  # the clip of the teacher's activations unless --act-clip gives another: a ViT is always clipped


def vit(name: str, num_classes=10, in_channels=3, image_size=32, width=1.0, patch=None) -> SpikingViT:
    dim, depth, heads, mlp_ratio = VIT_PLANS[name]
    return SpikingViT(num_classes, in_channels, image_size, width, dim=dim, depth=depth, heads=heads,
                      mlp_ratio=mlp_ratio, patch=patch)
