"""Text helpers: decoding files, sentence spans, word tokens. Pure functions."""

from __future__ import annotations

import re
import unicodedata

from ._errors import TranscriptError

# Abbreviations after which a full stop does not end a sentence (generic English, not data-fitted).
_ABBREV = {
    "mr", "mrs", "ms", "dr", "prof", "hon", "st", "sr", "jr", "rt", "no", "vs", "etc", "e.g", "i.e",
    "fig", "approx", "dept", "govt", "gen", "col", "lt", "sgt", "capt", "rev", "mt", "inc", "ltd",
    "co", "corp", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec",
}
# control characters (Unicode category Cc) other than \n \r \t \f
_CONTROLS = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
_SENT_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s+|$)")


def decode(data: bytes, name: str) -> tuple[str, str]:
    """Decode a transcript file. Returns (text, encoding). Raises TranscriptError for binary data."""
    if not data.strip():
        raise TranscriptError(f"{name}: the file is empty")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text, enc = data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise TranscriptError(f"{name}: not valid UTF-16 text ({exc.reason})") from None
    else:
        if b"\x00" in data[:65536]:
            raise TranscriptError(f"{name}: binary file (contains NUL bytes), not a text transcript")
        try:
            text, enc = data.decode("utf-8-sig"), "utf-8"
        except UnicodeDecodeError:
            try:
                text, enc = data.decode("cp1252"), "cp1252"
            except UnicodeDecodeError:
                raise TranscriptError(
                    f"{name}: undecodable text (neither UTF-8, UTF-16 nor Windows-1252)",
                    "Save the file as UTF-8 and ingest it again.",
                ) from None
    controls = len(_CONTROLS.findall(text, 0, 65536))
    if controls > max(8, len(text[:65536]) // 200):
        raise TranscriptError(f"{name}: binary or corrupt file ({controls} control characters)")
    if not text.strip():
        raise TranscriptError(f"{name}: the file contains only whitespace")
    return text, enc


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence [start, end) spans within text[start:end], whitespace trimmed."""
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    pos = start
    for m in _SENT_END.finditer(text, start, end):
        stop = m.end()
        word = re.search(r"([\w.]+)\.$", text[max(pos, stop - 12):stop])
        if m.group().startswith(".") and word and not m.group().startswith(".."):
            w = word.group(1).lower()
            if w in _ABBREV or (len(w) == 1 and w.isalpha()):
                continue
        nxt = text[stop:stop + 3].lstrip()
        if nxt and nxt[0].islower():
            continue
        _add(text, spans, pos, stop)
        pos = stop
    _add(text, spans, pos, end)
    # split also at line breaks: a paragraph never continues a sentence across a newline
    out: list[tuple[int, int]] = []
    for a, b in spans:
        cur = a
        for nl in re.finditer(r"\n", text[a:b]):
            _add(text, out, cur, a + nl.start())
            cur = a + nl.end()
        _add(text, out, cur, b)
    return out


def _add(text: str, spans: list[tuple[int, int]], a: int, b: int) -> None:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    if b > a:
        spans.append((a, b))


_WORD = re.compile(r"[\w][\w'’\-]*", re.UNICODE)

STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself just
    me more most my myself no nor not now of off on once only or other our ours ourselves out over
    own same she should so some such than that the their theirs them themselves then there these
    they this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours yourself yourselves also us may might must shall
    say said says tell told think thought ask asked get got one two well really much many like
    would could things thing way lot going know yes okay ok mr mrs ms dr hon s t""".split()
)


def words(text: str) -> list[str]:
    return [w.strip("'’-") for w in _WORD.findall(text.lower())]


def content_words(text: str) -> list[str]:
    return [w for w in words(text) if w and w not in STOPWORDS and len(w) > 1]


def fold(text: str) -> str:
    """Lowercase, strip accents and unify quote marks, for matching names and quotes."""
    if text.isascii():  # the common case, and nothing below changes ASCII but the case
        return text.lower()
    text = _NON_ASCII.sub(_strip_accents, unicodedata.normalize("NFKD", text))
    return text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"').lower()


_NON_ASCII = re.compile(r"[^\x00-\x7f]+")


def _strip_accents(m: re.Match) -> str:
    return "".join(ch for ch in m.group() if not unicodedata.combining(ch))
