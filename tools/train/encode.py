"""Token ids from the project's own tokenizer: one `freekv tokenize --lines` process per batch of texts."""
import json
import subprocess


def encode_lines(freekv, tokenizer, texts):
    """texts: list of str → list of lists of ids (no special tokens added)."""
    if not texts:
        return []
    stdin = "".join(json.dumps(t) + "\n" for t in texts)
    out = subprocess.run([freekv, "tokenize", "--tokenizer", tokenizer, "--lines"], input=stdin,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError("freekv tokenize failed: " + out.stderr.strip())
    ids = [json.loads(line) for line in out.stdout.splitlines()]
    if len(ids) != len(texts):
        raise RuntimeError(f"freekv tokenize returned {len(ids)} lines for {len(texts)} texts")
    return ids
