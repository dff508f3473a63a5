#!/usr/bin/python3
"""Prefill as a user sees it (run by bench/run_prefill_bench.sh): `freekv run` on a real prompt from
token 0, chunked as it always is, at about 1K, 8K and 32K tokens, in each matrix arithmetic asked for,
beside the matrix-product ceiling measured in the same run (gemm_bench).

The prompts are this repository's own text (its Markdown and C++ files in `git ls-files` order), cut
where `freekv tokenize` counts the target number of tokens. Each run generates one token, so
`timing.prefill_seconds` is the prompt's prefill, logits of its last row included; loading the model
(`timing.load_seconds`, every weight page touched) is before it. Prompts up to --repeat-max-tokens run
--repeats times, each in a fresh process, and the median run is reported beside all of them.

Two ceilings, both at the best path's GFLOP/s over a layer's projections (gemm_bench):
  projections_only  the prompt's projection FLOPs alone (attention excluded): the issue's figure;
  all_products      projections plus causal attention's two products (4 · head_dim · heads · layers
                    FLOPs per query-key pair), which grow with the square of the prompt.
"""
import argparse
import json
import os
import subprocess
import sys


def tokens_of(freekv, model, text):
    out = subprocess.run([freekv, "tokenize", "--tokenizer", model, "--add-special"], input=text, capture_output=True, text=True,
                         check=True)
    return len(json.loads(out.stdout))


def prompt_of(freekv, model, corpus, target):
    """The longest prefix of corpus (whole lines) of at most `target` tokens."""
    lines = corpus.splitlines(keepends=True)
    lo, hi = 0, len(lines)
    while lo < hi:  # the most lines whose text stays within target tokens
        mid = (lo + hi + 1) // 2
        if tokens_of(freekv, model, "".join(lines[:mid])) <= target:
            lo = mid
        else:
            hi = mid - 1
    if lo == len(lines):
        sys.exit("prefill_bench: the corpus holds fewer than %d tokens" % target)
    return "".join(lines[:lo])


def corpus_text(root):
    files = subprocess.run(["git", "-C", root, "ls-files", "*.md", "*.cc", "*.h"], capture_output=True, text=True,
                           check=True).stdout.split()
    parts = []
    for f in files:
        with open(os.path.join(root, f), encoding="utf-8", errors="replace") as fh:
            parts.append(fh.read())
    return "\n".join(parts)


def head_dim_of(cfg):
    return cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]


def flops(cfg, prompt_tokens):
    """(projection FLOPs, attention-product FLOPs) of prefilling prompt_tokens from token 0."""
    h, hd = cfg["hidden_size"], head_dim_of(cfg)
    heads, kv, inter, layers = (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["intermediate_size"],
                                cfg["num_hidden_layers"])
    per_token = 2 * layers * (h * (heads + 2 * kv) * hd + heads * hd * h + 3 * h * inter)
    pairs = prompt_tokens * (prompt_tokens + 1) // 2  # causal (query, key) pairs
    return per_token * prompt_tokens, 4 * hd * heads * layers * pairs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--root", required=True, help="the repository (prompts come from its text)")
    ap.add_argument("--build", required=True, help="the build directory (bin/freekv, bin/gemm_bench)")
    ap.add_argument("--model", required=True, help="the model directory")
    ap.add_argument("--tokens", default="1024,8192,32768", help="prompt sizes, comma-separated")
    ap.add_argument("--arithmetic", default="default,fp32",
                    help="comma-separated: default (the machine's choice) and/or fp32 (FREEKV_MATMUL=fp32)")
    ap.add_argument("--fp32-max-tokens", type=int, default=8192,
                    help="skip fp32 runs of longer prompts (a 32K prompt takes about 15 minutes in fp32 on two cores)")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each short prompt (the median is reported)")
    ap.add_argument("--repeat-max-tokens", type=int, default=2048, help="the longest prompt that is repeated")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    freekv = os.path.join(args.build, "bin", "freekv")
    with open(os.path.join(args.model, "config.json")) as f:
        cfg = json.load(f)

    shape = {"--hidden": cfg["hidden_size"], "--intermediate": cfg["intermediate_size"],
             "--heads": cfg["num_attention_heads"], "--kv-heads": cfg["num_key_value_heads"], "--head-dim": head_dim_of(cfg),
             "--vocab": cfg["vocab_size"], "--layers": cfg["num_hidden_layers"]}
    gemm_cmd = [os.path.join(args.build, "bin", "gemm_bench")] + [str(x) for kv in shape.items() for x in kv]
    gemm = json.loads(subprocess.run(gemm_cmd, capture_output=True, text=True, check=True).stdout)
    best_path, best_rate = max(gemm["prefill_tokens_per_s_projections_only"].items(), key=lambda kv: kv[1])
    proj_per_token, _ = flops(cfg, 1)
    best_gflops = best_rate * proj_per_token / 1e9  # the rate that gives best_rate on the projections

    corpus = corpus_text(args.root)
    runs = []
    for target in [int(t) for t in args.tokens.split(",")]:
        prompt = prompt_of(freekv, args.model, corpus, target)
        path = os.path.join(os.path.dirname(args.out) or ".", ".prefill-prompt-%d.txt" % target)
        with open(path, "w") as f:
            f.write(prompt)
        for arith in args.arithmetic.split(","):
            if arith == "fp32" and target > args.fp32_max_tokens:
                continue
            env = dict(os.environ)
            env.pop("FREEKV_MATMUL", None)
            if arith == "fp32":
                env["FREEKV_MATMUL"] = "fp32"
            # Short prompts several times, each in a fresh process, the median kept: on a shared VM one
            # run of a few seconds can be 25% off.
            results = []
            for _ in range(args.repeats if target <= args.repeat_max_tokens else 1):
                out = subprocess.run([freekv, "run", "--model", args.model, "--prompt-file", path, "--max-tokens", "1",
                                      "--ignore-eos", "--json", "--kv-memory", "12GiB"],
                                     capture_output=True, text=True, env=env, check=True)
                results.append(json.loads([l for l in out.stdout.splitlines() if l.startswith("{")][-1]))
            results.sort(key=lambda r: r["timing"]["prefill_seconds"])
            res = results[len(results) // 2]
            n = len(res["prompt_tokens"])
            seconds = res["timing"]["prefill_seconds"]
            proj, attn = flops(cfg, n)
            row = {"target_tokens": target, "prompt_tokens": n, "matmul_arithmetic": res["matmul_arithmetic"],
                   "prefill_seconds": seconds, "prefill_tokens_per_second": n / seconds,
                   "prefill_seconds_each_run": [r["timing"]["prefill_seconds"] for r in results],
                   "load_seconds": res["timing"]["load_seconds"],
                   "ceiling_projections_only_tokens_per_second": best_rate,
                   "ceiling_all_products_tokens_per_second": n / ((proj + attn) / (best_gflops * 1e9)),
                   "projection_gflop": proj / 1e9, "attention_gflop": attn / 1e9}
            row["of_ceiling_projections_only"] = row["prefill_tokens_per_second"] / best_rate
            row["of_ceiling_all_products"] = (row["prefill_tokens_per_second"] /
                                              row["ceiling_all_products_tokens_per_second"])
            runs.append(row)
            print("%6d tokens  %-4s  %7.1f s  %6.1f tok/s  %.2f of projections-only ceiling, %.2f of all products"
                  % (n, row["matmul_arithmetic"], seconds, row["prefill_tokens_per_second"],
                     row["of_ceiling_projections_only"], row["of_ceiling_all_products"]), flush=True)
        os.remove(path)
    report = {"bench": "prefill", "machine": gemm["machine"], "commit": gemm["commit"], "model": args.model,
              "method": "freekv run --max-tokens 1 on a prompt of this repository's text, from token 0, default "
                        "prefill chunk; ceilings from gemm_bench in the same run (see bench/prefill_bench.py)",
              "gemm": gemm, "best_gemm_path": best_path, "best_gemm_gflop_per_s": best_gflops, "runs": runs}
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
