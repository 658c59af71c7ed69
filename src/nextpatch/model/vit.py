"""A small Vision Transformer, written out so that nothing but torch is needed.

Four pieces, in the style of vit-pytorch: `FeedForward`, `Attention` (self- or cross-), `Block`
(pre-norm residual block, optionally with a cross-attention step) and `ViTEncoder` (token embedding +
position embedding + blocks). The generator and the comparator are built from these.

Shapes use: N batch, L tokens, M memory tokens, D width, Dt = t*t*3 pixels of one token.
Parameter names follow timm's `VisionTransformer` (`blocks.{i}.attn.qkv`, `norm1`, `mlp.fc1`, ...) so
that a timm checkpoint maps onto `ViTEncoder` with few renames (see `nextpatch.model.weights`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FeedForward(nn.Module):
    """x: (N, L, D) -> (N, L, D); Linear -> GELU -> Linear."""

    def __init__(self, *, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention: x (N, L, D) -> (N, L, D)."""

    def __init__(self, *, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        # (N, L, 3D) -> 3 x (N, heads, L, D/heads)
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class CrossAttention(nn.Module):
    """Queries attend to memory. The memory's keys/values come from `kv(memory)`.

    `kv` is split out so a caller can project each memory token once and reuse the projection for
    every query set that reads it (the generator does this: one patch is context for many triplets).
    x: (N, L, D), kv: (N, M, 2D) -> (N, L, D)
    """

    def __init__(self, *, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        h, dh = self.heads, dim // self.heads
        q = self.q(x).view(n, length, h, dh).transpose(1, 2)  # (N, h, L, dh)
        k, v = kv.view(n, kv.shape[1], 2, h, dh).permute(2, 0, 3, 1, 4)  # 2 x (N, h, M, dh)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)) [+ cross(norm(x), memory kv)] + mlp(norm(x))."""

    def __init__(self, *, dim: int, heads: int, mlp_ratio: float = 4.0, cross: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim=dim, heads=heads)
        if cross:
            self.norm_cross = nn.LayerNorm(dim, eps=1e-6)
            self.norm_memory = nn.LayerNorm(dim, eps=1e-6)
            self.cross = CrossAttention(dim=dim, heads=heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = FeedForward(dim=dim, hidden_dim=int(dim * mlp_ratio))

    def memory_kv(self, memory: torch.Tensor) -> torch.Tensor:
        """memory: (..., M, D) -> (..., M, 2D): this block's keys/values for the memory tokens."""
        return self.cross.kv(self.norm_memory(memory))

    def forward(self, x: torch.Tensor, kv: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        if kv is not None:
            x = x + self.cross(self.norm_cross(x), kv)
        return x + self.mlp(self.norm2(x))


class ViTEncoder(nn.Module):
    """Tokens of one patch -> features.

    tokens: (N, L, Dt) -> (N, L, D). `num_tokens` fixes the learned position embedding's length.
    With `class_token=True` a learned class token is prepended (as in timm / DINOv2; the position
    embedding then has L + 1 rows) and dropped from the output unless `with_class_token=True`.
    The caller patchifies; this class never sees an image, which keeps it reusable for the two
    generator encoders and the comparator alike.
    """

    def __init__(self, *, token_dim: int, num_tokens: int, dim: int, depth: int, heads: int,
                 mlp_ratio: float = 4.0, class_token: bool = False):
        super().__init__()
        self.patch_embed = nn.Linear(token_dim, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if class_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens + int(class_token), dim))
        self.blocks = nn.ModuleList(Block(dim=dim, heads=heads, mlp_ratio=mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, tokens: torch.Tensor, extra: torch.Tensor | None = None, *,
                with_class_token: bool = False, layers: tuple[int, ...] = ()) -> torch.Tensor:
        """`extra` (broadcastable to (N, L, D)) is added after the embedding, e.g. a patch-position code.

        `layers`: block numbers (1-based) whose outputs, each through the final norm, are concatenated:
        (N, L, len(layers) * D); empty: the last block's output, (N, L, D).
        """
        x = self.patch_embed(tokens)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # (N, 1 + L, D)
        x = x + self.pos_embed
        if extra is not None:
            x = x + extra
        outputs = []
        for i, block in enumerate(self.blocks, start=1):
            if layers and i > max(layers):  # later blocks would feed no output
                break
            x = block(x)
            if i in layers:
                outputs.append(self.norm(x))
        x = torch.cat(outputs, dim=-1) if layers else self.norm(x)
        return x[:, 1:] if self.cls_token is not None and not with_class_token else x


def init_weights(module: nn.Module) -> None:
    """timm-style init: truncated-normal linear weights, zero biases, unit LayerNorm."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
