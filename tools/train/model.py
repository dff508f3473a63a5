"""The Llama architecture exactly as freekv's engine loads it (worker/model): RMSNorm, RoPE in the
Hugging Face "rotate half" layout, grouped-query attention, SwiGLU MLP, optional tied embeddings.

Weights are named as in a Hugging Face Llama checkpoint, so `state_dict()` is what export.py writes.
Positions are explicit: training passes skip-wise position ids (PoSE) instead of 0..T-1.
"""
import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    vocab: int = 4096
    hidden: int = 256
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 64
    intermediate: int = 768
    rope_theta: float = 500000.0
    rms_eps: float = 1e-5
    max_positions: int = 32768
    tie_embeddings: bool = True

    def to_dict(self):
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):  # x: [..., dim]; normalised in fp32 as the engine does
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.float()).to(x.dtype)


def rope_cos_sin(positions, head_dim, theta):
    """positions: [B, T] int64 → cos, sin: [B, 1, T, head_dim] fp32 (angles in fp64 then rounded,
    so positions near 32K keep their precision)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    angles = positions.to(torch.float64)[..., None] * inv_freq  # [B, T, head_dim/2]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float()[:, None], angles.sin().float()[:, None]


def apply_rope(x, cos, sin):  # x: [B, H, T, D]; pairs (i, i + D/2) rotate together
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        self.q_proj = nn.Linear(c.hidden, c.heads * c.head_dim, bias=False)
        self.k_proj = nn.Linear(c.hidden, c.kv_heads * c.head_dim, bias=False)
        self.v_proj = nn.Linear(c.hidden, c.kv_heads * c.head_dim, bias=False)
        self.o_proj = nn.Linear(c.heads * c.head_dim, c.hidden, bias=False)

    def forward(self, x, cos, sin, mask):  # x: [B, T, hidden]; mask: [T, T] additive, causal
        c = self.c
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, c.heads, c.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, c.kv_heads, c.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, c.kv_heads, c.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        group = c.heads // c.kv_heads
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-1, -2)).float() / math.sqrt(c.head_dim) + mask
        out = torch.softmax(scores, dim=-1).to(v.dtype) @ v
        return self.o_proj(out.transpose(1, 2).reshape(B, T, c.heads * c.head_dim))


class MLP(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.gate_proj = nn.Linear(c.hidden, c.intermediate, bias=False)
        self.up_proj = nn.Linear(c.hidden, c.intermediate, bias=False)
        self.down_proj = nn.Linear(c.intermediate, c.hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden, c.rms_eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c.hidden, c.rms_eps)
        self.mlp = MLP(c)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c.vocab, c.hidden)
        self.layers = nn.ModuleList([Block(c) for _ in range(c.layers)])
        self.norm = RMSNorm(c.hidden, c.rms_eps)
        self.lm_head = nn.Linear(c.hidden, c.vocab, bias=False)
        if c.tie_embeddings:
            self.lm_head.weight = self.embed_tokens.weight
        self.apply(self._init)
        # Residual outputs start small so that depth does not blow the stream up (GPT-2's scaling).
        for name, p in self.named_parameters():
            if name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * c.layers))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, ids, positions):
        """ids, positions: [B, T] int64 → logits [B, T, vocab] (fp32)."""
        T = ids.shape[1]
        cos, sin = rope_cos_sin(positions, self.c.head_dim, self.c.rope_theta)
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.norm(x)).float()

    def hf_state_dict(self):
        """Tensors under Hugging Face's names (model.…, lm_head.weight unless tied)."""
        out = {}
        for name, t in self.state_dict().items():
            if name == "lm_head.weight":
                if not self.c.tie_embeddings:
                    out[name] = t
            else:
                out["model." + name] = t
        return out


@torch.no_grad()
def plant_previous_token_head(model: Llama, constant=0.3, pairs=8, amplitude=0.8):
    """Initialises layer 0's first query head (and its KV head) to attend to the previous position.

    Copying from context ("induction") needs a head that moves each token's identity one position on
    and a later head that matches it; found by gradient descent alone, the pair forms only after a long
    plateau (several thousand steps on this machine). So the first half is given at initialisation and
    training takes it from there:

      * every token's embedding gets `constant` in dimension 0: after RMSNorm each position carries
        a content-free direction x0;
      * the head's query reads only x0 into the real part of the `pairs` fastest RoPE pairs, its key
        the same rotated back by one position's angle, so q_t · k_s = a² x0² Σ_p cos((t − s − 1) θ_p),
        largest at s = t − 1. `amplitude` a makes that peak several logits above s = t and s = t − 2.

    The constant embedding direction adds the same logit to every token through the tied output head,
    so the model's predictions do not change.
    """
    c = model.c
    model.embed_tokens.weight[:, 0] = constant
    attn = model.layers[0].self_attn
    half = c.head_dim // 2
    theta = 1.0 / (c.rope_theta ** (torch.arange(pairs, dtype=torch.float64) * 2 / c.head_dim))
    q_rows, k_rows = attn.q_proj.weight[:c.head_dim], attn.k_proj.weight[:c.head_dim]  # head 0, KV head 0
    q_rows.zero_()
    k_rows.zero_()
    q_rows[:pairs, 0] = amplitude
    k_rows[:pairs, 0] = (amplitude * torch.cos(theta)).float()
    k_rows[half:half + pairs, 0] = (amplitude * torch.sin(theta)).float()
