"""Trains freekv's default model on this machine's CPU (or a GPU where one is visible) and writes it
as a Hugging Face model directory. Run through tools/train/train.sh, which installs what it needs.

  python3 tools/train/train.py --freekv build/bin/freekv --out models/freekv-tiny [--steps N] [--seed S]

Progress (tokens/s, losses, time left) goes to stdout and <out>/training-log.jsonl; the loss curve to
<out>/loss.png. A length check at 1×, 2× and 4× the longest training window runs every --check-every
steps: the answer accuracy must hold as the context grows, or the model learned positions, not
retrieval.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpus  # noqa: E402
import export  # noqa: E402
import tasks  # noqa: E402
from model import Config, Llama, plant_previous_token_head  # noqa: E402


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--freekv", required=True, help="the freekv binary (tokenizer training and encoding)")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--work", default=None, help="scratch directory (default: a new temporary one)")
    p.add_argument("--curriculum", default="128:16:1000:short,256:16:1000:all,512:16:600:all,1024:8:200:all",
                   help="stages of WINDOW:BATCH:STEPS:MIX (a tasks.MIXES name), trained in order")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--max-position", type=int, default=33792, help="PoSE: largest position id trained")
    p.add_argument("--check-every", type=int, default=1000)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    return p.parse_args()


def stages(curriculum):
    """"T:B:N:MIX,..." → [(window T, batch B, mix), ...] one entry per step. Short windows with small
    batches come first: many cheap steps while looking back and copying is learned (a phase change
    that takes steps, not tokens), then longer windows for long-range retrieval."""
    out = []
    for stage in curriculum.split(","):
        T, B, n, mix = stage.split(":")
        if mix not in tasks.MIXES:
            raise SystemExit(f"--curriculum: unknown mix '{mix}' in '{stage}'; use one of {sorted(tasks.MIXES)}")
        out += [(int(T), int(B), mix)] * int(n)
    return out


def learning_rate(step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    f = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * f)))


def losses(model, ids, cls, pos, device, autocast):
    """→ (text loss, answer loss, answer-token accuracy); tensors [B, T] in."""
    ids, cls, pos = (torch.from_numpy(x).to(device) for x in (ids, cls, pos))
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        logits = model(ids[:, :-1], pos[:, :-1])
    target, kind = ids[:, 1:], cls[:, 1:]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none").view_as(target)
    text, answer = kind == tasks.TEXT_LOSS, kind == tasks.ANSWER_LOSS
    text_loss = (ce * text).sum() / text.sum().clamp(min=1)
    answer_loss = (ce * answer).sum() / answer.sum().clamp(min=1)
    accuracy = ((logits.argmax(-1) == target) & answer).sum().item() / max(1, answer.sum().item())
    return text_loss, answer_loss, accuracy


@torch.no_grad()
def length_check(model, maker, lengths, device, autocast, per_kind=4):
    """Fraction of questions answered exactly (every answer token the argmax), per (kind, length)."""
    model.eval()
    out = {}
    for T in lengths:
        for kind in (tasks.PASSKEY, tasks.NEEDLES, tasks.KV):
            right = total = 0
            for _ in range(per_kind):
                ids, cls, _ = maker.window(kind, T)
                pos = np.arange(T, dtype=np.int64)
                t = torch.from_numpy(ids)[None].to(device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                    pred = model(t[:, :-1], torch.from_numpy(pos)[None, :-1].to(device)).argmax(-1)[0].cpu().numpy()
                ok = pred == ids[1:]
                answer = cls[1:] == tasks.ANSWER_LOSS
                # Answers are runs of answer tokens; one question = one run.
                starts = np.flatnonzero(answer & ~np.concatenate([[False], answer[:-1]]))
                for s in starts:
                    e = s
                    while e < len(answer) and answer[e]:
                        e += 1
                    right += int(ok[s:e].all())
                    total += 1
            out[f"{kind}@{T}"] = right / max(1, total)
    model.train()
    return out


def main():
    args = parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    autocast = device.type == "cpu" or torch.cuda.is_bf16_supported()
    work = args.work or tempfile.mkdtemp(prefix="freekv-train-")
    os.makedirs(work, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()

    docs = corpus.documents()
    corpus_path = os.path.join(work, "corpus.txt")
    with open(corpus_path, "w", encoding="utf-8") as f:
        for _, doc in docs:
            f.write("".join(doc).strip() + "\n")
    tokenizer = os.path.join(args.out, "tokenizer.json")
    subprocess.run([args.freekv, "mktokenizer", "--corpus", corpus_path, "--vocab", str(args.vocab), "--out", tokenizer],
                   check=True)
    bos, eos = args.vocab - 2, args.vocab - 1
    bank = tasks.Bank(args.freekv, tokenizer, docs, bos, eos, seed=args.seed)
    tasks.verify_pieces(args.freekv, tokenizer, bank)
    n_tokens = sum(len(s) for s in bank.sentence_ids)
    print(f"data: {len(bank.sentence_ids)} sentences, {n_tokens} tokens of text, {len(bank.facts)} facts, "
          f"{len(bank.pairs)} pairs; prepared in {time.time() - t0:.0f} s", flush=True)

    config = Config(vocab=args.vocab)
    model = Llama(config)
    plant_previous_token_head(model)
    model = model.to(device)
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters, {config}", flush=True)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    train_maker = tasks.WindowMaker(bank, args.seed, args.max_position)
    check_maker = tasks.WindowMaker(bank, args.seed + 1000, 0)
    plan = stages(args.curriculum)
    args.steps = len(plan)
    longest = max(T for T, _, _ in plan)
    check_lengths = [longest, 2 * longest, 4 * longest]

    log_path = os.path.join(args.out, "training-log.jsonl")
    log = open(log_path, "w")
    seconds_per_step = {}
    t_train = time.time()
    tokens_seen = 0
    for step in range(args.steps):
        T, B, mix = plan[step]
        for g in opt.param_groups:
            g["lr"] = learning_rate(step, args)
        ts = time.time()
        ids, cls, pos = train_maker.batch(B, T, mix)
        text_loss, answer_loss, acc = losses(model, ids, cls, pos, device, autocast)
        (text_loss + answer_loss).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.time() - ts
        tokens_seen += B * T
        seconds_per_step[T] = dt if T not in seconds_per_step else 0.9 * seconds_per_step[T] + 0.1 * dt
        record = {"step": step, "window": T, "lr": opt.param_groups[0]["lr"], "text_loss": text_loss.item(),
                  "answer_loss": answer_loss.item(), "answer_token_accuracy": acc, "tokens": tokens_seen,
                  "seconds": time.time() - t_train}
        if step % 10 == 0 or step == args.steps - 1:
            # Time left: the remaining steps at the latest rate seen for their window (or this one's,
            # scaled by tokens, for windows not trained yet).
            per_token = seconds_per_step[T] / (B * T)
            left = sum(seconds_per_step.get(t, per_token * t * b) for t, b, _ in plan[step + 1:])
            print(f"step {step:5d}/{args.steps} {mix:5s} T={T:4d} lr={record['lr']:.2e} text {record['text_loss']:.3f} "
                  f"answer {record['answer_loss']:.3f} acc {acc:.2f} | {B * T / dt:5.0f} tok/s, "
                  f"{tokens_seen / 1e6:.2f}M tokens, {record['seconds'] / 60:.1f} min, ~{left / 60:.0f} min left",
                  flush=True)
        if (step + 1) % args.check_every == 0 or step == args.steps - 1:
            record["length_check"] = length_check(model, check_maker, check_lengths, device, autocast)
            print("  length check: " + ", ".join(f"{k} {v:.2f}" for k, v in record["length_check"].items()), flush=True)
        log.write(json.dumps(record) + "\n")
        log.flush()
    log.close()

    export.write_model(model, config, args.out, bos, eos)
    export.plot_losses(log_path, os.path.join(args.out, "loss.png"))
    print(f"wrote {args.out} after {(time.time() - t0) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
