#!/usr/bin/python3
"""Self-tests of forward.py that need no engine: tiny Hugging Face directories written here.

  /usr/bin/python3 tests/reference/test_forward.py [--work DIR]

Checks: bf16 rounding; safetensors round trip (bf16/f16/f32, sharded); incremental decode with the
explicit KV cache equals the full-sequence forward; float32 compute agrees with float64; GQA equals MHA
with repeated K/V projections; the Qwen3 q/k norm makes the output invariant to scaling q/k; RoPE
scores depend only on the position difference; the llama3 frequency rule at its three bands; tied
embeddings; every perturbation changes the logits.
"""

import argparse
import json
import math
import os
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import forward as fw  # noqa: E402

ARCHS = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
         "mistral": "MistralForCausalLM"}


def make_model(out, arch="llama", layers=2, hidden=64, heads=4, kv_heads=2, head_dim=16,
               inter=96, vocab=64, seed=0, dtype="BF16", rope_scaling=None, tie=False, shards=1,
               attention_bias=False, theta=10000.0, weights=None, config_extra=None):
    """Writes a random HF directory; returns the float32 weights written (before dtype rounding)."""
    rng = np.random.default_rng(seed)
    os.makedirs(out, exist_ok=True)
    cfg = {"architectures": [ARCHS[arch]], "num_hidden_layers": layers, "hidden_size": hidden,
           "num_attention_heads": heads, "num_key_value_heads": kv_heads, "head_dim": head_dim,
           "intermediate_size": inter, "vocab_size": vocab, "rms_norm_eps": 1e-6,
           "rope_theta": theta, "tie_word_embeddings": tie, "max_position_embeddings": 512,
           "torch_dtype": {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}[dtype]}
    if rope_scaling:
        cfg["rope_scaling"] = rope_scaling
    if attention_bias:
        cfg["attention_bias"] = True
    cfg.update(config_extra or {})
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f)
    if weights is None:
        def r(*shape, scale=None):
            s = scale if scale is not None else 1.0 / math.sqrt(shape[-1])
            return (rng.standard_normal(shape) * s).astype(np.float32)
        weights = {"model.embed_tokens.weight": r(vocab, hidden, scale=1.0),
                   "model.norm.weight": (1 + 0.1 * rng.standard_normal(hidden)).astype(np.float32)}
        if not tie:
            weights["lm_head.weight"] = r(vocab, hidden)
        for i in range(layers):
            p = "model.layers.%d." % i
            weights[p + "input_layernorm.weight"] = (1 + 0.1 * rng.standard_normal(hidden)).astype(np.float32)
            weights[p + "post_attention_layernorm.weight"] = (1 + 0.1 * rng.standard_normal(hidden)).astype(np.float32)
            weights[p + "self_attn.q_proj.weight"] = r(heads * head_dim, hidden)
            weights[p + "self_attn.k_proj.weight"] = r(kv_heads * head_dim, hidden)
            weights[p + "self_attn.v_proj.weight"] = r(kv_heads * head_dim, hidden)
            weights[p + "self_attn.o_proj.weight"] = r(hidden, heads * head_dim)
            weights[p + "mlp.gate_proj.weight"] = r(inter, hidden)
            weights[p + "mlp.up_proj.weight"] = r(inter, hidden)
            weights[p + "mlp.down_proj.weight"] = r(hidden, inter)
            if arch == "qwen2" or attention_bias:
                for n in "qkv":
                    rows = (heads if n == "q" else kv_heads) * head_dim
                    weights[p + "self_attn.%s_proj.bias" % n] = r(rows, scale=0.5)
            if attention_bias and arch != "qwen2":
                weights[p + "self_attn.o_proj.bias"] = r(hidden, scale=0.5)
            if arch == "qwen3":
                weights[p + "self_attn.q_norm.weight"] = (1 + 0.2 * rng.standard_normal(head_dim)).astype(np.float32)
                weights[p + "self_attn.k_norm.weight"] = (1 + 0.2 * rng.standard_normal(head_dim)).astype(np.float32)
    names = sorted(weights)
    if shards == 1:
        fw.write_safetensors(os.path.join(out, "model.safetensors"),
                             {n: (weights[n], dtype) for n in names}, {"format": "pt"})
    else:
        wmap = {}
        for s in range(shards):
            fname = "model-%05d-of-%05d.safetensors" % (s + 1, shards)
            part = names[s::shards]
            fw.write_safetensors(os.path.join(out, fname), {n: (weights[n], dtype) for n in part})
            for n in part:
                wmap[n] = fname
        with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {}, "weight_map": wmap}, f)
    return weights


class Failures:
    def __init__(self):
        self.n = 0

    def check(self, ok, what):
        print(("ok    " if ok else "FAIL  ") + what)
        if not ok:
            self.n += 1


def maxdiff(a, b):
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", help="scratch directory (default: a temporary one, removed)")
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="freekv-ref-")
    os.makedirs(work, exist_ok=True)
    F = Failures()
    rng = np.random.default_rng(1)

    # bf16 rounding: ties to even, carries into the exponent, sign kept.
    x = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-7, -(1 + 2**-8 + 2**-20), 2 * (1 - 2**-16)],
                 np.float32)
    want = [1.0, 1.0, 1 + 2**-6, 1 + 2**-7, -(1 + 2**-7), 2.0]
    got = fw.round_bf16(x)
    F.check(list(got) == want, "bf16 round to nearest even: %s" % got)
    big = rng.standard_normal(10000).astype(np.float32) * 100
    rb = fw.round_bf16(big)
    F.check(np.all(np.abs(rb - big) <= np.abs(big) * 2.0**-8), "bf16 error <= half ulp")
    F.check(np.all(fw.f32_to_bf16_bits(rb.astype(np.float32)) == fw.f32_to_bf16_bits(big)),
            "bf16 rounding idempotent")

    # safetensors round trip.
    for dt in ("BF16", "F16", "F32"):
        p = os.path.join(work, "rt_%s.safetensors" % dt)
        arr = rng.standard_normal((3, 5)).astype(np.float32)
        fw.write_safetensors(p, {"a": (arr, dt), "b": (arr[0], dt)})
        back = fw.read_safetensors(p)
        ref = {"BF16": fw.round_bf16(arr), "F16": arr.astype(np.float16).astype(np.float64),
               "F32": arr.astype(np.float64)}[dt]
        F.check(back["a"].shape == (3, 5) and maxdiff(back["a"], ref) == 0 and maxdiff(back["b"], ref[0]) == 0,
                "safetensors round trip %s" % dt)

    ids = rng.integers(0, 64, size=23)
    configs = [
        ("llama", dict(arch="llama")),
        ("llama3", dict(arch="llama", rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                     "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                     "original_max_position_embeddings": 16})),
        ("linear", dict(arch="llama", rope_scaling={"type": "linear", "factor": 4.0})),
        ("qwen2", dict(arch="qwen2", dtype="F16")),
        ("qwen3", dict(arch="qwen3", heads=4, kv_heads=1, head_dim=32)),
        ("mistral", dict(arch="mistral", dtype="F32", shards=3)),
        ("llama-bias", dict(arch="llama", attention_bias=True)),
        ("tied", dict(arch="llama", tie=True, heads=7, kv_heads=1, head_dim=8, hidden=56)),
        ("mistral-window", dict(arch="mistral", config_extra={"sliding_window": 6})),
        ("qwen2-window", dict(arch="qwen2", config_extra={"use_sliding_window": True, "sliding_window": 4,
                                                         "max_window_layers": 1})),
    ]
    for name, kw in configs:
        d = os.path.join(work, name)
        make_model(d, **kw)
        m = fw.Model(d)
        for kvd in ("bf16", "f16", "none"):
            full = m.forward(ids, kv_dtype=kvd)
            cache = m.new_cache()
            inc = []
            # irregular chunks: 5, 1, 1, 7, rest
            cuts = [0, 5, 6, 7, 14, len(ids)]
            for s, e in zip(cuts[:-1], cuts[1:]):
                inc.append(m.forward(ids[s:e], start_pos=s, cache=cache, kv_dtype=kvd))
            inc = np.concatenate(inc)
            F.check(maxdiff(full, inc) < 1e-12, "%s kv=%s chunked/incremental == full (%.1e)"
                    % (name, kvd, maxdiff(full, inc)))
        full = m.forward(ids, kv_dtype="none")
        m32 = fw.Model(d, compute_dtype=np.float32)
        l32 = m32.forward(ids, kv_dtype="none")
        F.check(maxdiff(full, l32) < 1e-3 * (1 + np.abs(full).max()),
                "%s float32 vs float64 compute (%.1e, |ref| max %.1f)" % (name, maxdiff(full, l32), np.abs(full).max()))
        kvr = m.forward(ids, kv_dtype="bf16")
        F.check(0 < maxdiff(full, kvr) < 0.1 * full.std(), "%s bf16 KV rounding is a small, nonzero change (%.1e)"
                % (name, maxdiff(full, kvr)))
        for pt in fw.PERTURBATIONS:
            applicable = {"no_qk_norm": m.cfg.qk_norm, "no_qkv_bias": m.cfg.qkv_bias,
                          "no_rope_scaling": m.cfg.rope_type != "none",
                          "gqa_modulo": 1 < m.cfg.n_kv_heads < m.cfg.n_heads,
                          "no_sliding_window": any(w is not None for w in m.cfg.layer_windows)}.get(pt, True)
            if not applicable:
                continue
            dpt = maxdiff(m.forward(ids, kv_dtype="bf16", perturb=[pt]), kvr)
            F.check(dpt > 0, "%s perturbation %s changes logits (%.2e)" % (name, pt, dpt))

    # Which layers have a window, as transformers decides it.
    for name, arch, extra, want in [
            ("mistral", "mistral", {"sliding_window": 6}, [6, 6]),
            ("mistral null", "mistral", {"sliding_window": None}, [None, None]),
            ("qwen2 unused", "qwen2", {"sliding_window": 6}, [None, None]),
            ("qwen2 from layer 1", "qwen2", {"use_sliding_window": True, "sliding_window": 6, "max_window_layers": 1},
             [None, 6]),
            ("qwen2 default 28", "qwen2", {"use_sliding_window": True, "sliding_window": 6}, [None, None]),
            ("layer_types", "llama", {"sliding_window": 6, "layer_types": ["sliding_attention", "full_attention"]},
             [6, None])]:
        d = os.path.join(work, "windows-" + name.replace(" ", "-"))
        make_model(d, arch=arch, config_extra=extra)
        got = fw.Model(d).cfg.layer_windows
        F.check(got == want, "windows of %s: %s" % (name, got))

    # Sharded == single file.
    w = make_model(os.path.join(work, "single"), arch="mistral", seed=5)
    make_model(os.path.join(work, "sharded"), arch="mistral", seed=5, shards=2, weights=w)
    a1 = fw.Model(os.path.join(work, "single")).forward(ids)
    a2 = fw.Model(os.path.join(work, "sharded")).forward(ids)
    F.check(maxdiff(a1, a2) == 0, "sharded checkpoint == single file")

    # Tied: explicit lm_head equal to the embedding == tied.
    w = make_model(os.path.join(work, "tie"), tie=True, seed=6)
    w2 = dict(w)
    w2["lm_head.weight"] = w["model.embed_tokens.weight"]
    make_model(os.path.join(work, "untie"), tie=False, seed=6, weights=w2)
    F.check(maxdiff(fw.Model(os.path.join(work, "tie")).forward(ids),
                    fw.Model(os.path.join(work, "untie")).forward(ids)) == 0, "tied embeddings == explicit lm_head")

    # GQA == MHA with each kv head's projection repeated for its group (kv head = q head // group).
    H, KV, hd = 6, 2, 16
    w = make_model(os.path.join(work, "gqa"), heads=H, kv_heads=KV, head_dim=hd, dtype="F32", seed=7)
    wm = dict(w)
    for i in range(2):
        for n in "kv":
            key = "model.layers.%d.self_attn.%s_proj.weight" % (i, n)
            blocks = w[key].reshape(KV, hd, -1)
            wm[key] = np.concatenate([blocks[h // (H // KV)] for h in range(H)])
    make_model(os.path.join(work, "mha"), heads=H, kv_heads=H, head_dim=hd, dtype="F32", weights=wm)
    g = fw.Model(os.path.join(work, "gqa")).forward(ids, kv_dtype="none")
    mh = fw.Model(os.path.join(work, "mha")).forward(ids, kv_dtype="none")
    F.check(maxdiff(g, mh) < 1e-12, "GQA == MHA with repeated K/V (%.1e)" % maxdiff(g, mh))

    # Qwen3 q/k norm: scaling q_proj and k_proj by a constant changes nothing (up to eps).
    w = make_model(os.path.join(work, "q3a"), arch="qwen3", dtype="F32", seed=8)
    ws = dict(w)
    for i in range(2):
        for n in "qk":
            key = "model.layers.%d.self_attn.%s_proj.weight" % (i, n)
            ws[key] = w[key] * np.float32(4.0)
    make_model(os.path.join(work, "q3b"), arch="qwen3", dtype="F32", weights=ws)
    l1 = fw.Model(os.path.join(work, "q3a")).forward(ids, kv_dtype="none")
    l2 = fw.Model(os.path.join(work, "q3b")).forward(ids, kv_dtype="none")
    F.check(maxdiff(l1, l2) < 1e-4, "Qwen3 q/k norm makes q/k scale irrelevant (%.1e)" % maxdiff(l1, l2))

    # RoPE: <rope(q, m), rope(k, n)> depends only on m - n, and rotate_half pairs (i, i + d/2).
    m = fw.Model(os.path.join(work, "llama"))
    q = rng.standard_normal((1, 1, 16))
    k = rng.standard_normal((1, 1, 16))
    def dot(mq, nk):
        return float((m._rope(q, np.array([mq]), ()) * m._rope(k, np.array([nk]), ())).sum())
    F.check(abs(dot(10, 3) - dot(27, 20)) < 1e-9 and abs(dot(10, 3) - dot(3, 10)) > 1e-6,
            "RoPE scores depend on the position difference only")
    e = np.zeros((1, 1, 16)); e[..., 0] = 1.0
    r = m._rope(e, np.array([1]), ())[0, 0]
    F.check(abs(r[0] - math.cos(1.0)) < 1e-12 and abs(r[8] - math.sin(1.0)) < 1e-12
            and np.all(np.abs(np.delete(r, [0, 8])) < 1e-15), "RoPE rotates dim 0 into dim d/2 at frequency 1")

    # llama3 frequencies: high frequencies kept, low divided by factor, middle band interpolated.
    cfg = fw.Config({"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 1, "hidden_size": 128,
                     "num_attention_heads": 1, "intermediate_size": 8, "vocab_size": 8,
                     "rope_theta": 500000.0,
                     "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})
    inv = fw.rope_inv_freq(cfg)
    base = 500000.0 ** (-np.arange(0, 128, 2) / 128.0)
    wl = 2 * math.pi / base
    hi, lo, mid = wl < 2048, wl > 8192, (wl >= 2048) & (wl <= 8192)
    sm = (8192 / wl[mid] - 1.0) / 3.0
    F.check(np.allclose(inv[hi], base[hi], rtol=0, atol=0) and np.allclose(inv[lo], base[lo] / 8, rtol=1e-15)
            and np.allclose(inv[mid], (1 - sm) * base[mid] / 8 + sm * base[mid], rtol=1e-15)
            and hi.sum() > 0 and lo.sum() > 0 and mid.sum() > 0,
            "llama3 inv_freq bands (kept %d, scaled %d, smoothed %d)" % (hi.sum(), lo.sum(), mid.sum()))

    if not a.work:
        shutil.rmtree(work, ignore_errors=True)
    print("test_forward: %s (%d failure%s)" % ("FAILED" if F.n else "passed", F.n, "" if F.n == 1 else "s"))
    return 1 if F.n else 0


if __name__ == "__main__":
    sys.exit(main())
