#!/usr/bin/python3
"""Independent NumPy forward pass for Hugging Face causal-LM directories (the freekv reference).

Written from the Hugging Face modelling semantics, sharing nothing with the engine:
  * LlamaForCausalLM (rope_scaling none | linear | llama3, attention_bias), MistralForCausalLM (same
    network), Qwen2ForCausalLM (bias on q/k/v), Qwen3ForCausalLM (RMSNorm over head_dim on q and k
    per head, before RoPE).
  * RMSNorm: x / sqrt(mean(x^2) + eps) * weight.  RoPE: rotate_half (pairs i and i + head_dim/2),
    inv_freq = theta^(-2i/head_dim), then the scaling rule.  GQA: kv head = q head // (heads/kv_heads).
    Causal softmax attention scaled by 1/sqrt(head_dim).  SwiGLU MLP down(silu(gate(x)) * up(x)).
    Final norm, lm_head (or embed_tokens when tie_word_embeddings and lm_head.weight is absent).
  * Weights are used exactly as stored (bf16/f16/f32 -> float64 is exact); arithmetic is float64.
  * The engine stores K (after q/k-norm and RoPE) and V in its KV dtype and attends over the stored
    values; kv_dtype="bf16" | "f16" rounds K and V the same way (through float32, round to nearest
    even), kv_dtype="none" keeps them exact.  Queries are not rounded.

Perturbations (used only by check_model.py --self-test to prove the tolerance catches real bugs):
  rope_interleaved  rotate pairs (2i, 2i+1) instead of (i, i + d/2)
  gqa_modulo        kv head = q head % kv_heads instead of q head // group
  no_qk_norm        skip the Qwen3 q/k RMSNorm
  no_rope_scaling   ignore rope_scaling
  rope_q_offset     queries rotated one position ahead of the keys (an off-by-one in decode)
  no_qkv_bias       drop the q/k/v biases
  no_kv_round       keep K and V exact (informational: shows the size of the KV rounding effect)

Usable as a module (Model) or as a script:
  /usr/bin/python3 forward.py MODEL_DIR --ids 1,2,3 [--kv-dtype bf16|f16|none] [--out logits.npy]
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np

PERTURBATIONS = ("rope_interleaved", "gqa_modulo", "no_qk_norm", "no_rope_scaling",
                 "rope_q_offset", "no_qkv_bias", "no_kv_round", "no_sliding_window")

# ----------------------------------------------------------------------------------------------------
# dtype helpers


def bf16_bits_to_f32(u16):
    """uint16 bf16 bit patterns -> float32 (exact)."""
    return (np.asarray(u16, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x):
    """float32 -> uint16 bf16 bit patterns, round to nearest, ties to even (finite inputs)."""
    u = np.ascontiguousarray(np.asarray(x, dtype=np.float32)).view(np.uint32).astype(np.uint64)
    u = u + 0x7FFF + ((u >> 16) & 1)
    return (u >> 16).astype(np.uint16)


def round_bf16(x):
    """Round float values to bf16 (through float32, as the engine holds float32), back as float64."""
    return bf16_bits_to_f32(f32_to_bf16_bits(np.asarray(x, dtype=np.float32))).astype(np.float64)


def round_f16(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float64)


def near_rounding_midpoint(x, kv_dtype, f32_ulps=8):
    """How many elements of x lie within f32_ulps float32 ulps of a KV-dtype rounding midpoint: where
    the engine's float32 value (which differs from the float64 one by a few ulps) may round the other
    way.  Diagnostic only: such a flip moves one stored element by one KV-dtype ulp."""
    if kv_dtype not in ("bf16", "f16"):
        return 0
    x32 = np.asarray(x, dtype=np.float32)
    bits = np.ascontiguousarray(x32).view(np.uint32)
    if kv_dtype == "bf16":
        low = (bits & 0xFFFF).astype(np.int64)
        return int(np.count_nonzero(np.abs(low - 0x8000) <= f32_ulps))
    # f16 normals keep 10 of float32's 23 mantissa bits; subnormals are ignored here.
    a = np.abs(x32)
    normal = (a >= 2.0 ** -14) & (a < 65504.0)
    low = (bits & 0x1FFF).astype(np.int64)
    return int(np.count_nonzero(normal & (np.abs(low - 0x1000) <= f32_ulps)))


def round_kv(x, kv_dtype):
    if kv_dtype == "bf16":
        return round_bf16(x)
    if kv_dtype == "f16":
        return round_f16(x)
    if kv_dtype in ("none", "f32", None):
        return x
    raise ValueError("unknown kv dtype %r" % (kv_dtype,))


# ----------------------------------------------------------------------------------------------------
# safetensors


_ST_DTYPES = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8}


def read_safetensors(path):
    """Returns {name: float32/float64 ndarray} for one .safetensors file, validating the header."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError("%s: shorter than the 8-byte header length" % path)
    (hlen,) = struct.unpack("<Q", blob[:8])
    if 8 + hlen > len(blob):
        raise ValueError("%s: header length %d runs past the file" % (path, hlen))
    header = json.loads(blob[8:8 + hlen].decode("utf-8"))
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = info["dtype"]
        shape = [int(s) for s in info["shape"]]
        start, end = (int(v) for v in info["data_offsets"])
        if dt not in _ST_DTYPES:
            raise ValueError("%s: tensor %s has unsupported dtype %s" % (path, name, dt))
        n = int(np.prod(shape)) if shape else 1
        if end - start != n * _ST_DTYPES[dt] or start < 0 or base + end > len(blob):
            raise ValueError("%s: tensor %s offsets %d..%d do not fit shape %s %s"
                             % (path, name, start, end, shape, dt))
        raw = blob[base + start:base + end]
        if dt == "BF16":
            arr = bf16_bits_to_f32(np.frombuffer(raw, dtype="<u2"))
        elif dt == "F16":
            arr = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif dt == "F32":
            arr = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        else:
            arr = np.frombuffer(raw, dtype="<f8").astype(np.float64)
        out[name] = arr.reshape(shape)
    return out


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: (ndarray, "BF16"|"F16"|"F32")}.  Used by the self-tests to make tiny models."""
    header = {}
    chunks = []
    off = 0
    for name in sorted(tensors):
        arr, dt = tensors[name]
        arr = np.asarray(arr)
        if dt == "BF16":
            raw = f32_to_bf16_bits(arr).astype("<u2").tobytes()
        elif dt == "F16":
            raw = arr.astype("<f2").tobytes()
        elif dt == "F32":
            raw = arr.astype("<f4").tobytes()
        else:
            raise ValueError(dt)
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    if metadata is not None:
        header["__metadata__"] = metadata
    hbytes = json.dumps(header).encode("utf-8")
    hbytes += b" " * ((8 - len(hbytes) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for c in chunks:
            f.write(c)


def load_checkpoint(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    single = os.path.join(model_dir, "model.safetensors")
    tensors = {}
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        for shard in sorted(set(weight_map.values())):
            part = read_safetensors(os.path.join(model_dir, shard))
            for name, arr in part.items():
                if weight_map.get(name) != shard:
                    raise ValueError("%s: tensor %s is not mapped to this shard by the index"
                                     % (shard, name))
                tensors[name] = arr
        missing = [n for n in weight_map if n not in tensors]
        if missing:
            raise ValueError("index names tensors no shard holds: %s" % missing[:5])
    elif os.path.exists(single):
        tensors = read_safetensors(single)
    else:
        raise FileNotFoundError("no model.safetensors or model.safetensors.index.json in " + model_dir)
    return tensors


# ----------------------------------------------------------------------------------------------------
# config


class Config:
    def __init__(self, cfg):
        self.raw = cfg
        self.arch = cfg["architectures"][0]
        if self.arch not in ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
                             "Qwen3ForCausalLM"):
            raise ValueError("unsupported architecture " + self.arch)
        self.n_layers = int(cfg["num_hidden_layers"])
        self.hidden = int(cfg["hidden_size"])
        self.n_heads = int(cfg["num_attention_heads"])
        self.n_kv_heads = int(cfg.get("num_key_value_heads") or self.n_heads)
        self.head_dim = int(cfg.get("head_dim") or self.hidden // self.n_heads)
        self.intermediate = int(cfg["intermediate_size"])
        self.vocab = int(cfg["vocab_size"])
        self.eps = float(cfg.get("rms_norm_eps", 1e-6))
        self.theta = float(cfg.get("rope_theta", 10000.0))
        self.tie = bool(cfg.get("tie_word_embeddings", False))
        rs = cfg.get("rope_scaling") or None
        self.rope_type = "none"
        if rs:
            self.rope_type = rs.get("rope_type", rs.get("type", "default"))
            if self.rope_type == "default":
                self.rope_type = "none"
        self.rope_scaling = rs or {}
        if self.rope_type not in ("none", "linear", "llama3"):
            raise ValueError("unsupported rope scaling " + self.rope_type)
        if self.arch == "Qwen2ForCausalLM":
            self.qkv_bias, self.o_bias = True, False
        elif self.arch == "MistralForCausalLM":  # transformers' Mistral has no attention biases
            self.qkv_bias, self.o_bias = False, False
        else:  # Llama, Qwen3: attention_bias puts a bias on q, k, v and o
            ab = bool(cfg.get("attention_bias", False))
            self.qkv_bias, self.o_bias = ab, ab
        self.qk_norm = self.arch == "Qwen3ForCausalLM"
        # The window of each layer (None: the whole context), as transformers decides it: layer_types
        # when given; Mistral: every layer; Qwen2/Qwen3 with use_sliding_window: the layers from
        # max_window_layers (default 28) on.
        sw = cfg.get("sliding_window")
        types = cfg.get("layer_types")
        if types is not None:
            windowed = [t == "sliding_attention" for t in types]
        elif self.arch == "MistralForCausalLM":
            windowed = [bool(sw)] * self.n_layers
        elif self.arch != "LlamaForCausalLM" and cfg.get("use_sliding_window", False) and sw:
            first = int(cfg.get("max_window_layers", 28))
            windowed = [i >= first for i in range(self.n_layers)]
        else:
            windowed = [False] * self.n_layers
        self.layer_windows = [int(sw) if w else None for w in windowed]
        if self.n_heads % self.n_kv_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")


def rope_inv_freq(cfg, perturb=()):
    d = cfg.head_dim
    inv = cfg.theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    kind = "none" if "no_rope_scaling" in perturb else cfg.rope_type
    rs = cfg.rope_scaling
    if kind == "linear":
        inv = inv / float(rs["factor"])
    elif kind == "llama3":
        factor = float(rs["factor"])
        low = float(rs.get("low_freq_factor", 1.0))
        high = float(rs.get("high_freq_factor", 4.0))
        old = float(rs.get("original_max_position_embeddings", 8192))
        wavelen = 2.0 * math.pi / inv
        low_wavelen = old / low     # wavelengths longer than this are fully scaled
        high_wavelen = old / high   # wavelengths shorter than this are kept
        scaled = np.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1.0 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        inv = np.where(medium, smoothed, scaled)
    return inv


# ----------------------------------------------------------------------------------------------------
# model


def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


class Model:
    def __init__(self, model_dir, compute_dtype=np.float64):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.cfg = Config(json.load(f))
        self.dt = compute_dtype
        self.near_midpoint = 0  # K/V elements stored so far that sit near a rounding midpoint
        raw = load_checkpoint(model_dir)
        self.w = {k: v.astype(compute_dtype) for k, v in raw.items()}
        c = self.cfg
        need = ["model.embed_tokens.weight", "model.norm.weight"]
        for i in range(c.n_layers):
            p = "model.layers.%d." % i
            need += [p + "input_layernorm.weight", p + "post_attention_layernorm.weight"]
            need += [p + "self_attn.%s_proj.weight" % n for n in "qkvo"]
            need += [p + "mlp.%s_proj.weight" % n for n in ("gate", "up", "down")]
            if c.qkv_bias:
                need += [p + "self_attn.%s_proj.bias" % n for n in "qkv"]
            if c.o_bias:
                need.append(p + "self_attn.o_proj.bias")
            if c.qk_norm:
                need += [p + "self_attn.q_norm.weight", p + "self_attn.k_norm.weight"]
        missing = [n for n in need if n not in self.w]
        if missing:
            raise ValueError("checkpoint lacks %s" % missing[:6])
        if "lm_head.weight" in self.w:
            self.lm_head = self.w["lm_head.weight"]
        elif c.tie:
            self.lm_head = self.w["model.embed_tokens.weight"]
        else:
            raise ValueError("no lm_head.weight and tie_word_embeddings is false")
        hd, H, KV = c.head_dim, c.n_heads, c.n_kv_heads
        shapes = {"q": (H * hd, c.hidden), "k": (KV * hd, c.hidden), "v": (KV * hd, c.hidden),
                  "o": (c.hidden, H * hd)}
        for i in range(c.n_layers):
            for n, s in shapes.items():
                got = self.w["model.layers.%d.self_attn.%s_proj.weight" % (i, n)].shape
                if tuple(got) != s:
                    raise ValueError("layer %d %s_proj shape %s, expected %s" % (i, n, got, s))
        if self.lm_head.shape != (c.vocab, c.hidden):
            raise ValueError("lm_head shape %s" % (self.lm_head.shape,))

    def new_cache(self):
        return [{"k": np.zeros((self.cfg.n_kv_heads, 0, self.cfg.head_dim), self.dt),
                 "v": np.zeros((self.cfg.n_kv_heads, 0, self.cfg.head_dim), self.dt)}
                for _ in range(self.cfg.n_layers)]

    def _rope(self, x, positions, perturb):
        # x: [heads, T, hd]
        inv = rope_inv_freq(self.cfg, perturb)
        pos = positions.astype(np.float64)
        ang = pos[:, None] * inv[None, :]                 # [T, hd/2]
        cos, sin = np.cos(ang).astype(self.dt), np.sin(ang).astype(self.dt)
        half = self.cfg.head_dim // 2
        if "rope_interleaved" in perturb:
            a, b = x[..., 0::2], x[..., 1::2]
            out = np.empty_like(x)
            out[..., 0::2] = a * cos - b * sin
            out[..., 1::2] = b * cos + a * sin
            return out
        a, b = x[..., :half], x[..., half:]
        return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)

    def forward(self, ids, start_pos=0, cache=None, kv_dtype="bf16", perturb=()):
        """Logits [len(ids), vocab] for tokens at positions start_pos.. appended to cache."""
        c = self.cfg
        perturb = frozenset(perturb)
        unknown = perturb - set(PERTURBATIONS)
        if unknown:
            raise ValueError("unknown perturbation %s" % sorted(unknown))
        if "no_kv_round" in perturb:
            kv_dtype = "none"
        if cache is None:
            cache = self.new_cache()
        ids = np.asarray(ids, dtype=np.int64)
        if ids.min() < 0 or ids.max() >= c.vocab:
            raise ValueError("token id out of range")
        T = len(ids)
        H, KV, hd = c.n_heads, c.n_kv_heads, c.head_dim
        group = H // KV
        positions = np.arange(start_pos, start_pos + T)
        x = self.w["model.embed_tokens.weight"][ids]
        for i in range(c.n_layers):
            p = "model.layers.%d." % i
            w = self.w
            h = rms_norm(x, w[p + "input_layernorm.weight"], c.eps)
            q = h @ w[p + "self_attn.q_proj.weight"].T
            k = h @ w[p + "self_attn.k_proj.weight"].T
            v = h @ w[p + "self_attn.v_proj.weight"].T
            if c.qkv_bias and "no_qkv_bias" not in perturb:
                q = q + w[p + "self_attn.q_proj.bias"]
                k = k + w[p + "self_attn.k_proj.bias"]
                v = v + w[p + "self_attn.v_proj.bias"]
            q = q.reshape(T, H, hd).transpose(1, 0, 2)     # [H, T, hd]
            k = k.reshape(T, KV, hd).transpose(1, 0, 2)    # [KV, T, hd]
            v = v.reshape(T, KV, hd).transpose(1, 0, 2)
            if c.qk_norm and "no_qk_norm" not in perturb:
                q = rms_norm(q, w[p + "self_attn.q_norm.weight"], c.eps)
                k = rms_norm(k, w[p + "self_attn.k_norm.weight"], c.eps)
            q = self._rope(q, positions + (1 if "rope_q_offset" in perturb else 0), perturb)
            k = self._rope(k, positions, perturb)
            self.near_midpoint += near_rounding_midpoint(k, kv_dtype) + near_rounding_midpoint(v, kv_dtype)
            k = round_kv(k, kv_dtype).astype(self.dt)
            v = round_kv(v, kv_dtype).astype(self.dt)
            layer = cache[i]
            layer["k"] = np.concatenate([layer["k"], k], axis=1)
            layer["v"] = np.concatenate([layer["v"], v], axis=1)
            K, V = layer["k"], layer["v"]                  # [KV, S, hd]
            S = K.shape[1]
            if "gqa_modulo" in perturb:
                kv_of = np.arange(H) % KV
            else:
                kv_of = np.arange(H) // group
            Kh, Vh = K[kv_of], V[kv_of]                    # [H, S, hd]
            scores = q @ Kh.transpose(0, 2, 1) / math.sqrt(hd)   # [H, T, S]
            kpos = np.arange(S)
            allowed = kpos[None, :] <= positions[:, None]
            window = c.layer_windows[i]
            if window is not None and "no_sliding_window" not in perturb:
                allowed &= kpos[None, :] > positions[:, None] - window
            scores = np.where(allowed[None], scores, -np.inf)
            scores = scores - scores.max(axis=-1, keepdims=True)
            pr = np.exp(scores)
            pr = pr / pr.sum(axis=-1, keepdims=True)
            att = (pr @ Vh).transpose(1, 0, 2).reshape(T, H * hd)
            o = att @ w[p + "self_attn.o_proj.weight"].T
            if c.o_bias:
                o = o + w[p + "self_attn.o_proj.bias"]
            x = x + o
            h = rms_norm(x, w[p + "post_attention_layernorm.weight"], c.eps)
            g = h @ w[p + "mlp.gate_proj.weight"].T
            u = h @ w[p + "mlp.up_proj.weight"].T
            x = x + (silu(g) * u) @ w[p + "mlp.down_proj.weight"].T
        x = rms_norm(x, self.w["model.norm.weight"], c.eps)
        return x @ self.lm_head.T


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("model_dir")
    ap.add_argument("--ids", required=True, help="comma-separated token ids")
    ap.add_argument("--kv-dtype", default="bf16", choices=["bf16", "f16", "none"])
    ap.add_argument("--perturb", action="append", default=[], choices=PERTURBATIONS)
    ap.add_argument("--out", help="write float32 logits [T, vocab] here (.npy)")
    a = ap.parse_args(argv)
    m = Model(a.model_dir)
    ids = [int(t) for t in a.ids.split(",") if t.strip()]
    logits = m.forward(ids, kv_dtype=a.kv_dtype, perturb=a.perturb)
    if a.out:
        np.save(a.out, logits.astype(np.float32))
    print("argmax per position:", " ".join(str(int(t)) for t in logits.argmax(-1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
