"""Writes a trained model as a Hugging Face Llama directory (config.json, model.safetensors in bf16,
tokenizer_config.json, generation_config.json; train.py has already put tokenizer.json there), and
draws the loss curve."""
import json
import os
import struct

import torch


def write_safetensors(path, tensors):
    """tensors: {name: tensor}; stored as bf16, names sorted, data 8-byte aligned."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu", torch.bfloat16).contiguous()
        data = t.view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": "BF16", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def hf_config(c, bos, eos):
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": c.vocab,
        "hidden_size": c.hidden, "intermediate_size": c.intermediate, "num_hidden_layers": c.layers,
        "num_attention_heads": c.heads, "num_key_value_heads": c.kv_heads, "head_dim": c.head_dim,
        "hidden_act": "silu", "max_position_embeddings": c.max_positions, "rms_norm_eps": c.rms_eps,
        "rope_theta": c.rope_theta, "rope_scaling": None, "attention_bias": False, "mlp_bias": False,
        "tie_word_embeddings": c.tie_embeddings, "bos_token_id": bos, "eos_token_id": eos,
        "torch_dtype": "bfloat16",
    }


def write_model(model, config, out, bos, eos):
    write_safetensors(os.path.join(out, "model.safetensors"), model.hf_state_dict())
    files = {
        "config.json": hf_config(config, bos, eos),
        "tokenizer_config.json": {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
                                  "eos_token": "<|end_of_text|>", "model_max_length": config.max_positions},
        "generation_config.json": {"bos_token_id": bos, "eos_token_id": eos, "do_sample": False},
    }
    for name, value in files.items():
        with open(os.path.join(out, name), "w") as f:
            json.dump(value, f, indent=2)
            f.write("\n")


def plot_losses(log_path, png_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in open(log_path)]
    tokens = [r["tokens"] / 1e6 for r in records]
    fig, ax = plt.subplots(figsize=(7, 4))

    def smooth(values, k=25):
        out, acc = [], 0.0
        for i, v in enumerate(values):
            acc = v if i == 0 else acc + (v - acc) / min(i + 1, k)
            out.append(acc)
        return out

    ax.plot(tokens, smooth([r["text_loss"] for r in records]), label="text (next token)")
    ax.plot(tokens, smooth([r["answer_loss"] for r in records]), label="answers (retrieval)")
    ax.set_xlabel("training tokens (millions)")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("freekv-tiny training loss")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
