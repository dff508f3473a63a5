"""Training windows: natural text, and long-context retrieval tasks hidden in haystacks.

Every window is built from pieces that were tokenized one by one (see corpus.py: each piece starts
with one space and ends in a non-space, so the concatenation of the pieces' ids is the tokenization of
the joined text, as `freekv eval` will tokenize its prompts). A window holds:

  lm        natural sentences, read in order from a random place (loss: next token)
  passkey   one fact ("The pass key is 52113.") at a random depth of a haystack, asked at the end
  needles   2-8 facts with different subjects, all asked at the end in random order
  kv        "key": "value" pairs filling the window, 4-8 of them asked at the end
  copy      a passage to remember, asked to be repeated at the end
  repeat    a span (natural text or random tokens) then the same span again and again: the densest
            lesson in looking back and copying, which the sparse tasks above need first

Haystacks are natural text (read in order), or a few sentences repeated over and over (the classic
passkey filler, which tempts a model into copying the repetition instead of retrieving). Loss: the
next-token loss on natural text, and a separate loss on answers; the facts themselves (random values)
and the questions carry no loss.

Positions follow PoSE (arXiv 2309.10400): a window of T tokens is cut in two and the second part's
position ids jump ahead by a random skip, so relative distances up to `max_position` are trained while
the window stays short.
"""
import numpy as np

from encode import encode_lines

LM, NEEDLES, PASSKEY, KV, COPY, REPEAT = "lm", "needles", "passkey", "kv", "copy", "repeat"
KINDS = [LM, PASSKEY, NEEDLES, KV, COPY, REPEAT]
# The mixes a curriculum stage names: short windows of text and repeats first, then every task. Only
# the "all" mix stretches positions (PoSE). Tried here and dropped: thousands of steps of repeated
# random tokens alone (no copying after 5,000 steps of 8 × 64 tokens); the tasks' own mix, once the
# previous-token head is planted (model.py), learns retrieval within ~500 steps of 256 tokens.
MIXES = {
    "short": {REPEAT: 0.6, LM: 0.4},
    "all": {LM: 0.25, PASSKEY: 0.15, NEEDLES: 0.15, KV: 0.1, COPY: 0.1, REPEAT: 0.25},
}

# Loss classes of a token (the class of the token being predicted).
NO_LOSS, TEXT_LOSS, ANSWER_LOSS = 0, 1, 2

SUBJECTS = ["the pass key", "the special magic number for {w}", "the secret code of {w}", "the password for {w}",
            "the number of the {c} {w}", "the key to the {c} {w}", "the value of {w}"]
COLORS = ["red", "green", "blue", "yellow", "black", "white", "golden", "silver", "old", "small"]
INTROS = [" There is an important pass key hidden inside a lot of irrelevant text. Find it and memorize it.",
          " Some facts are hidden in the text below. Remember them.",
          " Below is a list of keys and their values. Each value belongs to exactly one key.",
          " Read the following text carefully."]
CLASSIC_FILLER = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."


def _cap(s):
    return s[0].upper() + s[1:]


class FactText:
    """Random facts as text: (statement, question, answer), each a piece."""

    def __init__(self, words, rng):
        self.words, self.rng = words, rng

    def value(self):
        r = self.rng
        kind = r.integers(4)
        if kind == 0:
            return str(r.integers(10 ** 4, 10 ** 5))  # five digits, as `freekv eval`'s pass keys
        if kind == 1:
            digits = int(r.integers(3, 8))
            return str(r.integers(10 ** (digits - 1), 10 ** digits))
        if kind == 2:
            return "%08x" % r.integers(2 ** 32)
        return self.words[r.integers(len(self.words))]

    def subject(self):
        r = self.rng
        s = SUBJECTS[r.integers(len(SUBJECTS))]
        return s.format(w=self.words[r.integers(len(self.words))], c=COLORS[r.integers(len(COLORS))])

    def fact(self, subject=None):
        r = self.rng
        k, v = subject or self.subject(), self.value()
        form = r.integers(3)
        if form == 0:
            statement = f" {_cap(k)} is {v}."
        elif form == 1:
            statement = f" {_cap(k)} is {v}. Remember it. {v} is {k}."
        else:
            statement = f" Remember that {k} is {v}."
        question = f" What is {k}? {_cap(k)} is" if r.integers(2) == 0 else f" {_cap(k)} is"
        return statement, question, f" {v}."

    def pair(self):
        key = "%08x" % self.rng.integers(2 ** 32)
        value = self.value()
        return f' "{key}": "{value}",', f' Find the value of "{key}". "{key}":', f' "{value}"'


class Bank:
    """Everything a window is assembled from, tokenized up front in a few `freekv tokenize` calls."""

    def __init__(self, freekv, tokenizer, documents, bos, eos, seed, facts=60000):
        rng = np.random.default_rng(seed)
        self.bos, self.eos = bos, eos
        sentences = [s for _, doc in documents for s in doc]
        ids = encode_lines(freekv, tokenizer, sentences)
        self.sentence_ids = [np.asarray(x, dtype=np.int64) for x in ids]
        words = sorted({w.lower() for s in sentences for w in s.split() if w.isalpha() and 4 <= len(w) <= 9})
        text = FactText(words, rng)
        fact_texts = [text.fact() for _ in range(facts)] + [text.fact("the pass key") for _ in range(facts // 4)]
        pair_texts = [text.pair() for _ in range(facts)]
        constants = INTROS + [CLASSIC_FILLER, " Here is a passage to remember:", " Repeat the passage:"]
        flat = [p for t in fact_texts + pair_texts for p in t] + constants
        enc = [np.asarray(x, dtype=np.int64) for x in encode_lines(freekv, tokenizer, flat)]
        n_fact = len(fact_texts) * 3
        self.facts = [tuple(enc[i:i + 3]) for i in range(0, n_fact, 3)]
        self.pass_key_facts = self.facts[facts:]
        self.facts = self.facts[:facts]
        self.pairs = [tuple(enc[i:i + 3]) for i in range(n_fact, n_fact + len(pair_texts) * 3, 3)]
        c = enc[n_fact + len(pair_texts) * 3:]
        self.intros, self.classic_filler, self.passage_intro, self.passage_ask = c[:len(INTROS)], c[-3], c[-2], c[-1]
        self.check_pieces = (fact_texts[:200], pair_texts[:200])


class WindowMaker:
    def __init__(self, bank: Bank, seed, max_position):
        self.b, self.rng, self.max_position = bank, np.random.default_rng(seed), max_position

    # -- haystack ------------------------------------------------------------------------------------
    def _sentences(self):
        """An endless iterator of haystack sentences: natural text in order, or a repeated few."""
        r, s = self.rng, self.b.sentence_ids
        mode = r.random()
        if mode < 0.1:
            while True:
                yield self.b.classic_filler
        if mode < 0.25:
            few = [s[r.integers(len(s))] for _ in range(r.integers(1, 5))]
            i = 0
            while True:
                yield few[i % len(few)]
                i += 1
        i = int(r.integers(len(s)))
        while True:
            yield s[i % len(s)]
            i += 1

    def _haystack(self, budget):
        out, used = [], 0
        for sent in self._sentences():
            if used + len(sent) > budget:
                return out
            out.append(sent)
            used += len(sent)

    # -- windows -------------------------------------------------------------------------------------
    def window(self, kind, T, stretch=False):
        """→ ids [T], loss class of each token [T], position ids [T] (all int64); `stretch`: PoSE."""
        pieces = self._pieces(kind, T)
        ids = np.full(T, self.b.eos, dtype=np.int64)
        cls = np.zeros(T, dtype=np.int64)
        at = 0
        for piece, c in pieces:
            n = min(len(piece), T - at)
            ids[at:at + n], cls[at:at + n] = piece[:n], c
            at += n
        return ids, cls, self._positions(T, stretch)

    def _positions(self, T, stretch):
        pos = np.arange(T, dtype=np.int64)
        if stretch and self.rng.random() < 0.6 and self.max_position > T:
            cut = int(self.rng.integers(1, T))
            pos[cut:] += int(self.rng.integers(0, self.max_position - T + 1))
        return pos

    def _pieces(self, kind, T):
        r, b = self.rng, self.b
        head = [(np.asarray([b.bos]), NO_LOSS)]
        if kind == LM:
            return head + [(s, TEXT_LOSS) for s in self._haystack(T - 1)]
        if kind == KV:
            return self._kv(head, T)
        if kind == REPEAT:
            return self._repeat(head, T)
        if r.random() < 0.5:
            head.append((b.intros[r.integers(len(b.intros))], NO_LOSS))
        if kind == COPY:
            s = b.sentence_ids
            start = int(r.integers(len(s)))
            passage = np.concatenate([s[(start + k) % len(s)] for k in range(int(r.integers(1, 3)))])[:96]
            facts = [(np.concatenate([b.passage_intro, passage]), b.passage_ask, passage)]
        elif kind == PASSKEY:
            facts = [b.pass_key_facts[r.integers(len(b.pass_key_facts))]]
        else:
            facts = [b.facts[i] for i in r.choice(len(b.facts), size=int(r.integers(2, 9)), replace=False)]
        return self._hide(head, facts, T)

    def _hide(self, head, facts, T):
        """Statements at random depths of a haystack, then every question followed by its answer."""
        r = self.rng
        used = sum(len(p) for p, _ in head) + sum(len(s) + len(q) + len(a) for s, q, a in facts)
        hay = self._haystack(max(0, T - used))
        slots = sorted(r.integers(0, len(hay) + 1, size=len(facts)))
        body = [(s, TEXT_LOSS) for s in hay]
        for slot, (statement, _, _) in reversed(list(zip(slots, facts))):
            body.insert(slot, (statement, NO_LOSS))
        tail = []
        for i in r.permutation(len(facts)):
            _, q, a = facts[i]
            tail += [(q, NO_LOSS), (a, ANSWER_LOSS)]
        return head + body + tail

    def _kv(self, head, T):
        r, b = self.rng, self.b
        head = head + [(b.intros[2], NO_LOSS)]
        asked = int(r.integers(4, 9))
        budget = T - sum(len(p) for p, _ in head)
        pairs = []
        while True:
            p = b.pairs[r.integers(len(b.pairs))]
            cost = len(p[0]) + (len(p[1]) + len(p[2])) * (1 if len(pairs) < asked else 0)
            if cost > budget:
                break
            pairs.append(p)
            budget -= cost
        chosen = r.choice(len(pairs), size=min(asked, len(pairs)), replace=False)
        tail = []
        for i in chosen:
            tail += [(pairs[i][1], NO_LOSS), (pairs[i][2], ANSWER_LOSS)]
        return head + [(p[0], NO_LOSS) for p in pairs] + tail

    def _repeat(self, head, T):
        r, b = self.rng, self.b
        n = int(r.integers(max(2, T // 16), T // 2))
        if r.random() < 0.5:
            span = r.integers(0, b.bos, size=n)
        else:
            s = b.sentence_ids
            start = int(r.integers(len(s)))
            span = np.concatenate([s[(start + k) % len(s)] for k in range(64)])[:n]
        out = head + [(span, NO_LOSS)]
        for _ in range((T - 1) // n):
            out += [(span[:1], NO_LOSS), (span[1:], ANSWER_LOSS)]
        return out

    def batch(self, B, T, mix):
        """B windows of T tokens drawn from MIXES[mix]: ids, loss classes, positions, each [B, T] int64."""
        weights = [MIXES[mix].get(k, 0.0) for k in KINDS]
        kinds = [KINDS[i] for i in self.rng.choice(len(KINDS), size=B, p=weights)]
        rows = [self.window(k, T, stretch=mix == "all") for k in kinds]
        return tuple(np.stack([row[j] for row in rows]) for j in range(3))


def verify_pieces(freekv, tokenizer, bank):
    """The pieces of a window must concatenate to the tokenization of their joined text."""
    facts, pairs = bank.check_pieces
    texts = [s + q + a for s, q, a in facts + pairs]
    joined = encode_lines(freekv, tokenizer, texts)
    parts = encode_lines(freekv, tokenizer, [p for t in facts + pairs for p in t])
    for i, whole in enumerate(joined):
        if whole != parts[3 * i] + parts[3 * i + 1] + parts[3 * i + 2]:
            raise RuntimeError(f"pieces of {texts[i]!r} do not tokenize like the whole text")
