"""Goldens of the shipped model from the training code's own PyTorch forward (model.py), for the
engine to match in CI (tests/golden/check_golden.py): for a few prompts, the greedy continuation and,
for every logits row `freekv run --dump-logits` writes, the top ids with their logits and the row's
log-sum-exp. Computed in float32 from the bf16 weights as exported, so the check covers the export too.

  /usr/bin/python3 tools/train/golden.py --model models/freekv-tiny --freekv build/bin/freekv --out tests/golden/freekv-tiny.json
"""
import argparse
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from encode import encode_lines  # noqa: E402
from model import Config, Llama  # noqa: E402

PROMPTS = [
    " The pass key is 52113. Remember it. 52113 is the pass key. The grass is green. The sky is blue."
    " What is the pass key? The pass key is",
    " In the beginning God created",
    " The Python interpreter reads a file and",
]
GENERATED = 8
TOP = 8


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "BF16", name
        b, e = info["data_offsets"]
        raw = torch.frombuffer(bytearray(data[b:e]), dtype=torch.int16).view(torch.bfloat16)
        out[name] = raw.float().reshape(info["shape"])
    return out


def load(model_dir):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    c = Config(vocab=cfg["vocab_size"], hidden=cfg["hidden_size"], layers=cfg["num_hidden_layers"],
               heads=cfg["num_attention_heads"], kv_heads=cfg["num_key_value_heads"], head_dim=cfg["head_dim"],
               intermediate=cfg["intermediate_size"], rope_theta=cfg["rope_theta"], rms_eps=cfg["rms_norm_eps"],
               max_positions=cfg["max_position_embeddings"], tie_embeddings=cfg["tie_word_embeddings"])
    model = Llama(c)
    tensors = {k[len("model."):] if k.startswith("model.") else k: v
               for k, v in read_safetensors(os.path.join(model_dir, "model.safetensors")).items()}
    if c.tie_embeddings:
        tensors["lm_head.weight"] = tensors["embed_tokens.weight"]
    model.load_state_dict(tensors)
    return model.eval(), cfg


@torch.no_grad()
def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--freekv", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    model, cfg = load(args.model)
    cases = []
    for text, ids in zip(PROMPTS, encode_lines(args.freekv, os.path.join(args.model, "tokenizer.json"), PROMPTS)):
        prompt = [cfg["bos_token_id"]] + ids
        seq = list(prompt)
        for _ in range(GENERATED):
            logits = model(torch.tensor([seq]), torch.arange(len(seq))[None])[0]
            seq.append(int(logits[-1].argmax()))
        generated = seq[len(prompt):]
        logits = model(torch.tensor([seq[:-1]]), torch.arange(len(seq) - 1)[None])[0]
        # Rows as `freekv run --dump-logits` writes them: one per prompt token, then one per generated
        # token, the first of which is the last prompt row again.
        rows = torch.cat([logits[:len(prompt)], logits[len(prompt) - 1:]])
        top = rows.topk(TOP, dim=-1)
        cases.append({"prompt": text, "prompt_tokens": prompt, "tokens": generated,
                      "rows": [{"top_ids": i.tolist(), "top_logits": [round(x, 5) for x in v.tolist()],
                                "logsumexp": round(float(r.logsumexp(-1)), 5)}
                               for i, v, r in zip(top.indices, top.values, rows)]})
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"model": "models/freekv-tiny", "generated": GENERATED, "cases": cases}, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}: {len(cases)} prompts")


if __name__ == "__main__":
    main()
