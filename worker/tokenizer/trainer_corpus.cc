#include "worker/tokenizer/trainer_corpus.h"

#include <string>

namespace freekv::tok {

namespace {
// Prose: plain explanatory English about the things this project does, plus a short story, so the
// merges cover common words, punctuation, numbers and contractions.
constexpr std::string_view kProse = R"PROSE(
The lighthouse keeper wrote in her logbook every evening, long after the lamp was lit. She noted the
wind, the height of the swell, the ships that passed and the birds that rested on the railing. Most
nights were quiet. Some were not. On the third of November the barometer fell faster than she had
ever seen it fall, and by midnight the whole tower hummed like a struck bell.

She didn't panic. She checked the fuel, trimmed the wick, wound the clockwork that turned the lens,
and then she sat down with a cup of tea and waited. "Storms are patient," her father used to say,
"so you'd better be more patient than they are." He had kept the same light for forty-one years.

A language model reads text the way a careful reader does: one piece at a time, remembering what came
before. Each piece is a token. A token may be a whole word, part of a word, a single letter, a space
followed by a word, or a run of digits. The tokenizer decides where the pieces begin and end, and it
must decide the same way every time, or the model will see words it has never been trained on.

Byte pair encoding starts from single bytes. It counts which two neighbouring symbols appear together
most often, glues them into a new symbol, and repeats. After a few thousand rounds the common words of
the training text are single symbols, while rare words are still spelled out in smaller parts. Nothing
is ever unknown, because any text is a sequence of bytes, and every byte has a symbol of its own.

Memory is the other half of the story. When a conversation grows to tens of thousands of tokens, the
keys and values that attention needs no longer fit on the graphics card. They can live in the host's
memory instead, in pages, and come back to the card only when the current query needs them. Choosing
which pages matter, and fetching them before they are needed, is what makes the difference between a
server that crawls and one that keeps up with its users.

We measure everything twice. First we write the slow, obvious version, and we test it against a
reference we trust. Then we write the fast version and compare the two on thousands of random inputs.
If they disagree by more than a tiny tolerance, the fast one is wrong until proven otherwise. It's
boring work, but it's the kind of boring that lets you sleep at night.

Numbers show up everywhere: 3 apples, 12 eggs, 365 days, 2024 and 1999, 3.14159, 0.5, 100%, 7:45 pm,
$19.99, 1,000,000 users, version 2.1.0, port 8080, 64 GiB of memory, 128 heads, 4096 tokens per page.
Dates like 2023-05-17 and times like 23:59:59 are common in logs, and so are hexadecimal values such
as 0xDEADBEEF and 0x7f.

I'm sure you've noticed that people write "can't", "won't", "it's", "they're", "we'll", "I'd" and
"you've" all the time. They're short, they're friendly, and they're a small puzzle for a tokenizer,
which has to decide whether the apostrophe belongs to the word before it or the piece after it.

The keeper's log for the fourth of November is short. "Wind backing west. Sea still heavy. Two
trawlers sheltering in the bay. Light burned all night without fault." Underneath, in smaller
letters, she added: "Father would have been pleased."

Questions people ask a server like this one: How long can my prompt be? What happens when the pool is
full? Can two workers share one store? Why did my session move to another worker? What does the
correction threshold do, and when should I change it? Each answer belongs in the documentation, in
plain words, with an example that actually runs.

The harbour town woke slowly. Fishermen mended nets on the quay, a baker pulled the first loaves from
an oven that had been burning since four, and the schoolteacher unlocked the gate at half past seven
exactly, as she had done every morning for twenty-two years. Gulls argued over scraps. A delivery van
reversed, beeping, into a lane far too narrow for it, and everybody watched to see whether it would
scrape the wall again. It did. The driver shrugged, waved, and carried on.

In the afternoon the wind dropped and the fog came in, thick and grey and smelling of salt and diesel.
Children walked home holding hands in long chains. Somewhere a foghorn sounded, low and mournful, every
thirty seconds, and the old men in the cafe counted between the blasts out of habit, the way their
grandfathers had counted between lightning and thunder.

Scheduling is a kind of bookkeeping. A server receives requests of every size: short questions, long
documents, conversations that continue for hours. Continuous batching admits new requests whenever a
slot frees up, instead of waiting for a whole batch to finish. Prefill processes the prompt in chunks;
decoding produces one token per step for every running sequence. The scheduler balances fairness,
latency and throughput, and it must never let a single enormous request starve everybody else.

Caches are promises about the future. When we keep a page resident we are betting that someone will
read it soon; when we evict it we are betting that nobody will. Good policies make those bets using
evidence: recency, frequency, and, for attention, how strongly the current query points at each page.
Bad policies make them by accident. Most bugs in caching code are not wrong bets but broken accounting:
a page counted twice, a slot reused before the copy into it has finished, a version number that wraps.

Testing a tokenizer is mostly about the strange corners. Does it handle an empty string? A string that
is nothing but spaces? Tabs mixed with carriage returns? Emoji made of several code points glued
together? Accented letters written as one character or as a letter followed by a combining mark? Text
that looks like a special token but is missing its final bracket? Every one of these has broken some
real system somewhere, usually in production, usually on a Friday.

Weather report for the coast: moderate westerly winds, strengthening later; visibility good, becoming
poor in showers; sea state rough or very rough; temperatures between nine and fourteen degrees. Small
craft should remain in harbour until further notice. The next report will follow at eighteen hundred.
)PROSE";

// Code: small programs in several languages with the usual indentation, operators and brackets.
constexpr std::string_view kCode = R"CODE(
#include <cstdio>
#include <vector>

// Returns the index of the largest element, or -1 for an empty vector.
int argmax(const std::vector<float>& values) {
  if (values.empty()) return -1;
  int best = 0;
  for (int i = 1; i < static_cast<int>(values.size()); ++i) {
    if (values[i] > values[best]) best = i;
  }
  return best;
}

int main(int argc, char** argv) {
  std::vector<float> scores = {0.1f, 2.5f, -3.0f, 2.5f};
  std::printf("argmax = %d\n", argmax(scores));
  return 0;
}

def softmax(xs):
    """Numerically stable softmax of a list of floats."""
    top = max(xs)
    exps = [math.exp(x - top) for x in xs]
    total = sum(exps)
    return [e / total for e in exps]


class PageTable:
    def __init__(self, page_tokens=32):
        self.page_tokens = page_tokens
        self.pages = {}

    def lookup(self, session, layer, page):
        key = (session, layer, page)
        if key not in self.pages:
            raise KeyError(f"page {page} of layer {layer} is not resident")
        return self.pages[key]

function mergeSorted(a, b) {
  const out = [];
  let i = 0, j = 0;
  while (i < a.length && j < b.length) {
    out.push(a[i] <= b[j] ? a[i++] : b[j++]);
  }
  return out.concat(a.slice(i), b.slice(j));
}

fn checksum(data: &[u8]) -> u32 {
    let mut sum: u32 = 0;
    for &byte in data.iter() {
        sum = sum.wrapping_mul(31).wrapping_add(byte as u32);
    }
    sum
}

SELECT session_id, COUNT(*) AS pages, SUM(bytes) AS total_bytes
FROM kv_pages
WHERE layer = 0 AND resident = TRUE
GROUP BY session_id
ORDER BY total_bytes DESC
LIMIT 10;

#!/usr/bin/env bash
set -euo pipefail
for f in "$@"; do
  if [[ -f "$f" ]]; then
    wc -l "$f"
  else
    echo "missing: $f" >&2
  fi
done

{"model": "tiny", "layers": 2, "heads": 4, "vocab_size": 512, "rope_theta": 10000.0, "tied": false}

package store

import (
	"errors"
	"sync"
)

// ErrFull is returned when no block is free.
var ErrFull = errors.New("pool is full")

type Allocator struct {
	mu   sync.Mutex
	free []int
}

func (a *Allocator) Take() (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.free) == 0 {
		return -1, ErrFull
	}
	n := a.free[len(a.free)-1]
	a.free = a.free[:len(a.free)-1]
	return n, nil
}

public final class RingBuffer<T> {
    private final Object[] items;
    private int head = 0, tail = 0, size = 0;

    public RingBuffer(int capacity) { items = new Object[capacity]; }

    public boolean offer(T item) {
        if (size == items.length) return false;
        items[tail] = item;
        tail = (tail + 1) % items.length;
        size++;
        return true;
    }
}

[server]
listen = "127.0.0.1:7070"
max_sessions = 256
timeout_ms = 30000

workers:
  - name: gpu0
    device: cuda:0
    budget_tokens: 2048
  - name: cpu
    device: cpu
    threads: 16

CXXFLAGS += -O2 -Wall -Wextra
all: server client
server: server.o pool.o
	$(CXX) $(CXXFLAGS) -o $@ $^ -lpthread
clean:
	rm -f *.o server client

<!doctype html>
<html lang="en">
  <head><meta charset="utf-8"><title>Status</title></head>
  <body><h1>Workers</h1><ul id="workers"></ul><script src="status.js"></script></body>
</html>

static inline uint32_t rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }
typedef struct { uint64_t seq; uint32_t layer; uint32_t count; } recall_request_t;
)CODE";
}  // namespace

std::string_view trainer_corpus() {
  static const std::string corpus = std::string(kProse) + std::string(kCode);
  return corpus;
}

}  // namespace freekv::tok
