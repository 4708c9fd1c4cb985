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
    text, enc, _ = decode_with_warnings(data, name)
    return text, enc


# invalid bytes, as the "surrogateescape" error handler leaves them (one lone surrogate per byte)
_ESCAPED = re.compile("[\udc80-\udcff]")
_NON_ASCII_CHAR = re.compile("[^\x00-\x7f\udc80-\udcff]")
_BOMS = (  # longest first: a UTF-32 LE BOM starts like a UTF-16 LE one
    (b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"),
)


def decode_with_warnings(data: bytes, name: str) -> tuple[str, str, list[str]]:
    """Decode a transcript file: (text, encoding, warnings). UTF-32 or UTF-16 with a BOM; else
    UTF-8 (BOM dropped), a few invalid bytes replaced by U+FFFD with a warning; else
    Windows-1252. NUL characters are dropped (with a warning) before any offset is taken, so
    offsets point into the text as stored. Raises TranscriptError for binary data."""
    if not data.strip():
        raise TranscriptError(f"{name}: the file is empty")
    warnings: list[str] = []
    wide = next((enc for bom, enc in _BOMS if data.startswith(bom)), None)
    if wide is not None:
        try:
            text, enc = data.decode(wide), wide
        except UnicodeDecodeError as exc:
            try:  # FF FE 00 00 is also UTF-16 LE beginning with U+0000
                if wide != "utf-32" or data.startswith(b"\x00"):
                    raise
                text, enc = data.decode("utf-16"), "utf-16"
            except UnicodeDecodeError:
                raise TranscriptError(f"{name}: not valid {wide.upper()} text ({exc.reason})") from None
    else:
        if b"\x00" in data[:65536]:
            raise TranscriptError(f"{name}: binary file (contains NUL bytes), not a text transcript")
        text, enc = _decode_8bit(data, name, warnings)
    controls = len(_CONTROLS.findall(text, 0, 65536))
    if controls > max(8, len(text[:65536]) // 200):
        raise TranscriptError(f"{name}: binary or corrupt file ({controls} control characters)")
    nuls = text.count("\x00")
    if nuls:
        text = text.replace("\x00", "")
        warnings.append(f"{nuls} NUL character{'s' if nuls != 1 else ''} dropped")
    if not text.strip():
        raise TranscriptError(f"{name}: the file contains only whitespace")
    return text, enc, warnings


def _decode_8bit(data: bytes, name: str, warnings: list[str]) -> tuple[str, str]:
    """UTF-8 when it is UTF-8 with at most a few bad bytes (or has a BOM), else Windows-1252."""
    text = data.decode("utf-8-sig", "surrogateescape")
    bad = len(_ESCAPED.findall(text))
    if not bad:
        return text, "utf-8"
    bom = data.startswith(b"\xef\xbb\xbf")
    heavy = bad * 20 > len(data)  # over 5 % of the bytes: not text with a few bad bytes
    good = _NON_ASCII_CHAR.subn("", text)[1]
    if not heavy and (bom or good >= bad):
        return _replaced(text, bad, warnings), "utf-8"
    if not bom:
        try:
            return data.decode("cp1252"), "cp1252"
        except UnicodeDecodeError:
            if not heavy:
                return _replaced(text, bad, warnings), "utf-8"
    raise TranscriptError(
        f"{name}: undecodable text ({bad} bytes are not UTF-8, and it is not Windows-1252 either)",
        "Save the file as UTF-8 and ingest it again.",
    )


def _replaced(text: str, bad: int, warnings: list[str]) -> str:
    warnings.append(f"decoded as UTF-8 with {bad} invalid byte{'s' if bad != 1 else ''} replaced by \ufffd")
    return _ESCAPED.sub("\ufffd", text)


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


# ---------------------------------------------------------------------------- terminal output
# Stored text, file names and question sets are printed by the CLI: escape sequences in them
# must not set the terminal title or clear the screen, a newline in a name must not fake a line.
# C0 controls, DEL, C1 controls (CSI among them), lone surrogates (undecodable bytes of a file
# name or argument) and the bidi overrides and isolates that reorder what follows them.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")
_UNSAFE_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(m: re.Match) -> str:
    c = m.group()
    o = ord(c)
    if c in _NAMED:
        return _NAMED[c]
    if 0xDC80 <= o <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{o - 0xDC00:02x}"
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"


def safe(value: object) -> str:
    """One line for the terminal: every control character shown as an escape, newlines too."""
    return _UNSAFE.sub(_visible, str(value))


def safe_text(value: object, indent: str = "") -> str:
    """Text whose lines are meant (a passage, an answer): newlines and tabs kept, each new line
    indented by ``indent``; every other control character shown as an escape."""
    return _UNSAFE_TEXT.sub(_visible, str(value)).replace("\n", "\n" + indent)
