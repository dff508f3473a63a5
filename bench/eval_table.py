#!/usr/bin/python3
"""Markdown tables of `freekv eval` JSON files (bench/run_model_eval.sh), for the model card.

  bench/eval_table.py [--pivot] bench/results/model-eval-*.json

--pivot: accuracy as one row per (task, context) and one column per policy and budget (all depths
together; the cases per cell in parentheses after the context).
"""
import json
import sys
from collections import defaultdict


def accuracy_tables(rows):
    by_case = defaultdict(dict)
    for r in rows:
        by_case[(r["task"], r["policy"], r.get("budget", "-"), r["context"])][r["depth"]] = r
    depths = sorted({d for v in by_case.values() for d in v})
    print("| task | policy | budget | context | " + " | ".join(f"depth {d}" for d in depths) + " | all |")
    print("|---" * (5 + len(depths)) + "|")
    order = {"full": 0, "streaming": 1, "quest": 2, "arkvale": 3, "freekv": 4}
    def key(item):
        task, policy, budget, ctx = item[0]
        return task, ctx, order.get(policy, 9), policy, -1 if budget == "-" else budget
    for (task, policy, budget, ctx), cells in sorted(by_case.items(), key=key):
        right = sum(c["accuracy"] * c["trials"] for c in cells.values())
        total = sum(c["trials"] for c in cells.values())
        parts = [f"{cells[d]['accuracy']:.2f} ({cells[d]['trials']})" if d in cells else "" for d in depths]
        print(f"| {task} | {policy} | {budget} | {ctx} | " + " | ".join(parts) + f" | {right / total:.2f} |")


def pivot_table(rows):
    """One row per (task, context), one column per policy and budget: accuracy over all depths (cases)."""
    order = {"full": 0, "streaming": 1, "quest": 2, "arkvale": 3, "freekv": 4}
    cells = defaultdict(lambda: [0.0, 0])
    for r in rows:
        cell = cells[(r["task"], r["context"], r["policy"], r.get("budget", "-"))]
        cell[0] += r["accuracy"] * r["trials"]
        cell[1] += r["trials"]
    columns = sorted({(p, b) for (_, _, p, b) in cells}, key=lambda c: (order.get(c[0], 9), c[0], -1 if c[1] == "-" else c[1]))
    print("| task | context | " + " | ".join(p if b == "-" else f"{p} {b}" for p, b in columns) + " |")
    print("|---" * (2 + len(columns)) + "|")
    for task, ctx in sorted({(t, c) for (t, c, _, _) in cells}):
        parts = []
        for p, b in columns:
            right, n = cells.get((task, ctx, p, b), (0, 0))
            parts.append(f"{right / n:.2f}" if n else "")
        n = cells[(task, ctx, "full", "-")][1] if (task, ctx, "full", "-") in cells else ""
        print(f"| {task} | {ctx} ({n}) | " + " | ".join(parts) + " |")


def agreement_table(rows):
    print("| policy | budget | context | top-1 match | first divergence | mean KL | correction rate |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['policy']} | {r.get('budget', '-')} | {r['context']} | {r['top1_match_rate']:.3f} | "
              f"{r['first_divergence']} | {r['mean_kl']:.4f} | {r['correction_rate']:.3f} |")


def dynamics_table(rows):
    print("| context | layer | KV head | steps | mean cos | p10 | median | > 0.84 | > 0.9 | corrections τ=0.8 | τ=0.9 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for h in r["heads"]:
            print(f"| {r['context']} | {h['layer']} | {h['kv_head']} | {h['steps']} | {h['mean_cosine']:.3f} | "
                  f"{h['p10_cosine']:.3f} | {h['median_cosine']:.3f} | {h['share_above_0.84']:.2f} | "
                  f"{h['share_above_0.9']:.2f} | {h['correction_rate_tau_0.8']:.3f} | {h['correction_rate_tau_0.9']:.3f} |")


def main():
    args = sys.argv[1:]
    pivot = "--pivot" in args
    rows = [r for path in args if path != "--pivot" for r in json.load(open(path))["results"]]
    accuracy = pivot_table if pivot else accuracy_tables
    for name, select, table in (("accuracy", lambda r: "accuracy" in r, accuracy),
                                ("agreement with full", lambda r: r["task"] == "agreement", agreement_table),
                                ("query dynamics", lambda r: r["task"] == "dynamics", dynamics_table)):
        chosen = [r for r in rows if select(r)]
        if chosen:
            print(f"\n### {name}\n")
            table(chosen)


if __name__ == "__main__":
    main()
