"""English training text from Debian packages that tools/train/setup.sh installs:

  bible-kjv      the King James Version of the Bible (public domain), read through the `bible` program
  python3-doc    the Python 3.11 documentation's reStructuredText sources (PSF licence): prose
                 paragraphs only; code, directives, tables and headings are dropped

Text comes out as sentences, each starting with one space and ending in a non-space, so that
sentences tokenized one by one concatenate to exactly the tokenization of the joined text (the
Llama 3 pre-tokenizer attaches a word's leading space to the word).
"""
import glob
import re
import subprocess

PYTHON_DOC_SOURCES = "/usr/share/doc/python3-doc/html/_sources"

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
_ROLE = re.compile(r":[a-z:]+:`~?!?([^`<]*?)(?:\s*<[^>]*>)?`")  # :func:`name <target>` -> name
_LITERAL = re.compile(r"``([^`]*)``")
_LINK = re.compile(r"`([^`<]*?)\s*<[^>]*>`_+")
_EMPHASIS = re.compile(r"\*{1,2}([^*\s][^*]*?)\*{1,2}")


def kjv_paragraphs():
    """One paragraph per chapter of the KJV, verse numbers removed."""
    out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], check=True, capture_output=True, text=True).stdout
    chapters = {}
    for line in out.splitlines():
        ref, _, verse = line.partition(" ")
        book_chapter = ref.split(":")[0]
        chapters.setdefault(book_chapter, []).append(verse.strip())
    return [" ".join(v) for v in chapters.values()]


def _clean_rst(text):
    text = _ROLE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _LITERAL.sub(r"\1", text)
    text = _EMPHASIS.sub(r"\1", text)
    return text.replace("\\", "")


def python_doc_paragraphs():
    """Prose paragraphs of the Python documentation: unindented runs of text lines."""
    paragraphs = []
    for path in sorted(glob.glob(PYTHON_DOC_SOURCES + "/**/*.txt", recursive=True)):
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
        current = []
        for i, line in enumerate(lines):
            underline = i + 1 < len(lines) and re.fullmatch(r"([=\-~^*#+\"'])\1{2,}", lines[i + 1].strip() or "x")
            prose = (line and not line[0].isspace() and not line.startswith("..") and not underline
                     and not re.match(r"[=\-~^*#+|]{3,}", line) and not line.lstrip().startswith(">>>"))
            if prose:
                current.append(line.strip())
            else:
                if current:
                    paragraphs.append(" ".join(current))
                current = []
        if current:
            paragraphs.append(" ".join(current))
    # Paragraphs that end in "::" introduce code that was dropped; short ones are headings or labels.
    return [_clean_rst(p) for p in paragraphs if len(p.split()) >= 8 and not p.endswith("::")]


def sentences(paragraphs):
    """Each paragraph split into sentences of ' word ... end' form (see the module comment)."""
    out = []
    for p in paragraphs:
        p = " ".join(p.split())
        for s in _SENTENCE_END.split(p):
            if len(s.split()) >= 3:
                out.append(" " + s)
    return out


def documents():
    """[(source name, [sentence, ...]), ...]: one list per paragraph, kept in reading order."""
    docs = [("kjv", sentences([p])) for p in kjv_paragraphs()]
    docs += [("python-doc", sentences([p])) for p in python_doc_paragraphs()]
    return [(name, s) for name, s in docs if s]
