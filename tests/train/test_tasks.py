#!/usr/bin/python3
"""The training windows of tools/train/tasks.py, checked without PyTorch (NumPy and the freekv binary).

  test_tasks.py --freekv BIN --tokenizer DIR

On a small made-up corpus and the test model's tokenizer, over many seeds and every mix:
  * the pieces of facts and pairs tokenize, concatenated, exactly like their joined text;
  * windows are T tokens, start with <|begin_of_text|>, and carry only the three loss classes;
  * every answer of a retrieval window can be found earlier in the window (the fact was hidden there)
    and follows its question; copies repeat their span;
  * positions increase by one except at most one PoSE jump, which only the "all" mix makes, and stay
    below the largest trained position.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "train"))
import tasks  # noqa: E402

WORDS = ("river stone garden window silver lantern meadow castle bridge thunder orchard valley candle harbor "
         "forest mountain apple morning evening quiet gentle bright").split()


QUOTE = ord('"')  # the byte-level BPE gives byte b the id b


def documents(rng):
    docs = []
    for d in range(30):
        sentences = []
        for _ in range(40):
            words = [WORDS[i] for i in rng.integers(len(WORDS), size=int(rng.integers(4, 12)))]
            sentences.append(" " + " ".join(words).capitalize() + ".")
        docs.append((f"doc{d}", sentences))
    return docs


def answer_runs(cls):
    """[(start, end)] of the runs of answer tokens (positions of the predicted tokens)."""
    runs, start = [], None
    for i, c in enumerate(list(cls) + [tasks.NO_LOSS]):
        if c == tasks.ANSWER_LOSS and start is None:
            start = i
        elif c != tasks.ANSWER_LOSS and start is not None:
            runs.append((start, i))
            start = None
    return runs


def contains(haystack, needle):
    n = len(needle)
    return any(np.array_equal(haystack[i:i + n], needle) for i in range(len(haystack) - n + 1))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--freekv", required=True)
    p.add_argument("--tokenizer", required=True)
    args = p.parse_args()
    tokenizer = os.path.join(args.tokenizer, "tokenizer.json")
    with open(tokenizer) as f:
        vocab_top = max(t["id"] for t in json.load(f)["added_tokens"])
    bos, eos = vocab_top - 1, vocab_top
    bank = tasks.Bank(args.freekv, tokenizer, documents(np.random.default_rng(0)), bos, eos, seed=0, facts=400)
    tasks.verify_pieces(args.freekv, tokenizer, bank)
    checked, windows = {k: 0 for k in tasks.KINDS}, 0
    max_position = 4096
    for seed in range(40):
        maker = tasks.WindowMaker(bank, seed, max_position)
        for mix in tasks.MIXES:
            for T in (64, 256, 512):
                ids, cls, pos = maker.batch(4, T, mix)
                assert ids.shape == cls.shape == pos.shape == (4, T), (ids.shape, cls.shape, pos.shape)
                for row_ids, row_cls, row_pos in zip(ids, cls, pos):
                    assert row_ids[0] == bos and row_cls[0] == tasks.NO_LOSS
                    assert set(np.unique(row_cls)) <= {tasks.NO_LOSS, tasks.TEXT_LOSS, tasks.ANSWER_LOSS}
                    steps = np.diff(row_pos)
                    assert (steps >= 1).all() and row_pos[-1] < max_position, row_pos
                    jumps = int((steps > 1).sum())
                    assert jumps <= (1 if mix == "all" else 0), (mix, jumps)
                    for s, e in answer_runs(row_cls):
                        answer = row_ids[s:e]
                        # The answer's tokens appear before its question: retrieval, not guessing. A
                        # pair's answer ends in a closing quote that the pair itself fused with its comma
                        # ('",'): the value before it must be there.
                        if answer[-1] == QUOTE and not contains(row_ids[:s - 1], answer):
                            answer = answer[:-1]
                        assert contains(row_ids[:s - 1], answer), (mix, T, s, e)
                        assert row_cls[s - 1] == tasks.NO_LOSS  # a question (or a copy's first token) before it
                windows += 4
        for kind in tasks.KINDS:
            ids, cls, _ = maker.window(kind, 512)
            runs = answer_runs(cls)
            if kind == tasks.LM:
                assert not runs and (cls == tasks.TEXT_LOSS).sum() > 400, kind
            else:
                assert runs, f"{kind}: no answer in a 512-token window"
            checked[kind] += 1
    print(f"tasks: ok, {windows} windows of every mix, then one of each kind per seed: " + str(checked))


if __name__ == "__main__":
    main()
