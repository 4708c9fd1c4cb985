"""Parse transcript files into speaker turns with exact source offsets.

Formats: plain text / Markdown with speaker tags (optional YAML front matter, introduction,
trailing reader comments), WebVTT, SubRip and JSON. Every turn keeps ``segments``: pieces of
its text with the ranges they occupy in the decoded source text, so citations can be checked.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from ._errors import TranscriptError
from ._identity import link_speakers
from ._records import Segment, Speaker, Transcript, Turn
from ._roles import assign_acts
from ._text import decode_with_warnings

TEXT_SUFFIXES = {".txt", ".md", ".markdown", ".text"}
SUFFIXES = TEXT_SUFFIXES | {".vtt", ".srt", ".json"}

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n|$)")
_CONNECTORS = {"of", "the", "de", "la", "le", "van", "von", "der", "den", "da", "di", "du", "del", "and", "for", "y", "bin", "al"}
_TAG = re.compile(
    r"""^(?P<lead>[ \t]*(?:[-*>][ \t]+)?)          # optional list / quote marker
        (?P<b1>\*\*|__)?(?P<tag>[^:\n*_]{1,100}?)(?P<b2>\*\*|__)?   # the tag, maybe bold
        [ \t]*:(?P<b3>\*\*|__)?[ \t]*               # the colon (bold may close after it)
    """,
    re.X,
)
_HEADING = re.compile(r"^[ \t]*#{1,6}[ \t]+(.*)$")
_COMMENTS_LINE = re.compile(r"^\s*(?:\d+\s+)?(?:reader\s+)?(?:comments?|responses?)\s*(?:\(\d+\))?\s*:?\s*$", re.I)
_COMMENT_HEAD = re.compile(
    r"^\s*(?P<name>[^\d\n:]{2,80}?)[\s,|·-]+(?P<date>\d{1,2}\s+[A-Za-z]{3,9}\.?,?\s+\d{4}|[A-Za-z]{3,9}\.?\s+\d{1,2},\s+\d{4}|\d{4}-\d{2}-\d{2})"
    r"(?:\s+(?:at\s+)?\d{1,2}:\d{2}(?:\s*[apAP]\.?[mM]\.?)?)?\s*$"
)


@dataclass
class _RawTurn:
    label: str | None
    segments: list[Segment]
    tag_start: int
    start_time: float | None = None
    end_time: float | None = None
    act: str | None = None  # preset act (introduction, comment, statement)
    comment_author: str | None = None
    comment_date: str | None = None


@dataclass
class _Meta:
    title: str = ""
    date: str = ""
    source: str = ""
    speakers: dict[str, Speaker] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def transcript_id_for(path: PurePath, root: PurePath | None) -> str:
    if root is None:
        return path.name
    return path.relative_to(root).as_posix()


def parse_bytes(data: bytes, transcript_id: str, suffix: str | None = None) -> Transcript:
    """Decode and parse one file's bytes. Raises TranscriptError with the reason."""
    if data and not data.strip():
        raise TranscriptError(f"{transcript_id}: the file contains only whitespace")
    text, encoding, notes = decode_with_warnings(data, transcript_id)
    return parse_text(text, transcript_id, suffix, encoding, notes)


def parse_text(text: str, transcript_id: str, suffix: str | None = None, encoding: str = "utf-8",
               decode_warnings: list[str] | None = None) -> Transcript:
    suffix = (suffix or PurePath(transcript_id).suffix).lower()
    if suffix == ".vtt" or (suffix not in SUFFIXES and text.lstrip("\ufeff").startswith("WEBVTT")):
        fmt, (raw, meta) = "vtt", _parse_cues(text, transcript_id, vtt=True)
    elif suffix == ".srt":
        fmt, (raw, meta) = "srt", _parse_cues(text, transcript_id, vtt=False)
    elif suffix == ".json":
        fmt, (raw, meta) = "json", _parse_json(text, transcript_id)
    else:
        fmt, (raw, meta) = ("markdown" if suffix in {".md", ".markdown"} else "text"), _parse_tagged(text)
    if encoding != "utf-8":
        meta.warnings.append(f"decoded as {encoding}")
    meta.warnings.extend(decode_warnings or [])
    return _build(text, transcript_id, fmt, raw, meta)


# --------------------------------------------------------------------------- tagged text


def _lines(text: str, start: int = 0, end: int | None = None):
    """Yield (line_start, line_text_without_eol)."""
    end = len(text) if end is None else end
    pos = start
    while pos < end:
        m = _LINE.match(text, pos, end)
        if not m or m.end() == pos:
            break
        line = m.group().rstrip("\r\n")
        yield pos, line
        pos = m.end()


def _front_matter(text: str, meta: _Meta) -> int:
    """Read YAML front matter into meta; return where the body starts."""
    head = text.lstrip("\ufeff")
    off = len(text) - len(head)
    if not re.match(r"---[ \t]*\r?\n", head):
        return 0
    m = re.search(r"^(?:---|\.\.\.)[ \t]*(?:\r?\n|$)", head[3:], re.M)
    if not m:
        meta.warnings.append("front matter starts with --- but never ends; read as text")
        return 0
    block = head[3 : 3 + m.start()]
    body_start = off + 3 + m.end()
    import yaml

    try:
        data = yaml.safe_load(block)
    except yaml.YAMLError as exc:
        meta.warnings.append(f"front matter is not valid YAML ({str(exc).splitlines()[0]}); ignored")
        return body_start
    if data is None:
        return body_start
    if not isinstance(data, dict):
        meta.warnings.append("front matter is not a mapping; ignored")
        return body_start
    _apply_metadata(data, meta)
    return body_start


def _apply_metadata(data: dict[str, Any], meta: _Meta) -> None:
    for key in ("title", "date", "source"):
        value = data.get(key)
        if value is not None and not isinstance(value, (dict, list)):
            setattr(meta, key, str(value).strip())
        elif value is not None:
            meta.warnings.append(f"front matter {key!r} should be text; ignored")
    speakers = data.get("speakers")
    items: list[tuple[str, Any]] = []
    if isinstance(speakers, dict):
        items = [(str(k), v) for k, v in speakers.items()]
    elif isinstance(speakers, list):
        for entry in speakers:
            if isinstance(entry, dict) and (entry.get("tag") or entry.get("name")):
                items.append((str(entry.get("tag") or entry.get("name")), entry))
            else:
                meta.warnings.append("front matter speakers: each entry needs a tag or name; one ignored")
    elif speakers is not None:
        meta.warnings.append("front matter 'speakers' should map tags to names; ignored")
    for tag, value in items:
        tag = tag.strip()
        if isinstance(value, str):
            meta.speakers[tag] = Speaker(tag=tag, name=value.strip() or tag)
        elif isinstance(value, dict):
            role = str(value.get("role", "") or "").strip().lower()
            if role and role not in ("interviewer", "interviewee", "other"):
                meta.warnings.append(f"speaker {tag}: unknown role {role!r} (interviewer, interviewee, other); inferred instead")
                role = ""
            meta.speakers[tag] = Speaker(
                tag=tag,
                name=str(value.get("name") or tag).strip(),
                role=role or "",  # type: ignore[arg-type]
                description=str(value.get("description") or "").strip(),
            )
        else:
            meta.speakers[tag] = Speaker(tag=tag, name=tag)


def _looks_like_name(tag: str) -> bool:
    tag = tag.strip()
    if not tag or len(tag) > 100 or tag[0] in "([{":
        return False
    outside = re.sub(r"\([^()]*(?:\([^()]*\)[^()]*)*\)", " ", tag).strip()
    if not outside or re.search(r"[?!;\"“”<>=/\\|{}\[\]@#$%^&+]", outside) or "http" in outside.lower():
        return False
    parts = outside.split()
    if len(parts) > 6 or outside.replace(" ", "").isdigit():
        return False
    for word in parts:
        w = word.strip(".,'’-")
        if not w:
            continue
        if w.lower() in _CONNECTORS:
            continue
        if not (w[0].isupper() or w[0].isdigit()):
            return False
    return parts[0][0].isupper() or parts[0][0].isdigit()


def _tag_at(line: str, known: set[str] | dict[str, Speaker]) -> tuple[str, int] | None:
    """If the line starts with a speaker tag, return (tag, where the text after it starts)."""
    m = _TAG.match(line)
    if not m:
        return None
    tag = m.group("tag").strip()
    if not tag or (m.group("b1") and not (m.group("b2") or m.group("b3"))):
        return None
    if tag not in known and not _looks_like_name(tag):
        return None
    # "10:30" is a time, not a tag
    if re.fullmatch(r"\d{1,2}", tag) and re.match(r"\d{2}", line[m.end():]):
        return None
    return tag, m.end()


def _tag_rule(counts: dict[str, int], text_lines: int, known: dict[str, Speaker]):
    """Which candidate tags are speakers: known ones, recurring ones, multi-word or capitals
    ones; and any, when tagged lines make up much of the text (then it is a dialogue)."""
    tagged = sum(counts.values())
    dialogue = len(counts) >= 2 and tagged >= 2 and tagged * 3 >= text_lines

    def accept(tag: str) -> bool:
        if tag in known or counts.get(tag, 0) > 1 or dialogue:
            return True
        return len(tag.split()) > 1 or tag.isupper()

    return accept


def _parse_tagged(text: str) -> tuple[list[_RawTurn], _Meta]:
    meta = _Meta()
    body = _front_matter(text, meta)
    known = set(meta.speakers) | {s.name for s in meta.speakers.values() if s.name}
    lines = list(_lines(text, body))
    # First pass: find candidate tags; single-word title-case tags must recur or be known.
    candidates: list[tuple[int, str, int] | None] = []
    counts: dict[str, int] = {}
    for start, line in lines:
        hit = _tag_at(line, known)
        candidates.append((start, hit[0], hit[1]) if hit else None)
        if hit:
            counts[hit[0]] = counts.get(hit[0], 0) + 1
    accept = _tag_rule(counts, sum(1 for _, l in lines if l.strip()), known)

    # Where the trailing comments section starts (after the last tag), if any.
    last_tag_line = max((i for i, c in enumerate(candidates) if c and accept(c[1])), default=-1)
    # (the first "Comments" line with a comment heading somewhere below it: one pass from the
    # end finds the last heading, so many "Comments" lines cost no more than one)
    comments_at = None
    last_head = next((i for i in range(len(lines) - 1, last_tag_line, -1) if _COMMENT_HEAD.match(lines[i][1])), -1)
    for i in range(max(last_tag_line, 0), last_head):
        if _COMMENTS_LINE.match(lines[i][1]):
            comments_at = i
            break

    raw: list[_RawTurn] = []
    current: _RawTurn | None = None
    intro: _RawTurn | None = None
    seen_tag = False
    for i, (start, line) in enumerate(lines):
        if comments_at is not None and i >= comments_at:
            break
        heading = _HEADING.match(line)
        if heading:
            if not meta.title and not seen_tag:
                meta.title = re.sub(r"[*_`]", "", heading.group(1)).strip()
            continue
        cand = candidates[i]
        if cand and accept(cand[1]):
            tag, text_at = cand[1], cand[2]
            seen_tag = True
            current = _RawTurn(label=tag, segments=[], tag_start=start + len(line) - len(line.lstrip()))
            raw.append(current)
            piece = line[text_at:]
            _add_segment(current, piece, start + text_at)
            continue
        if not line.strip():
            continue
        target = current
        if target is None:
            if intro is None:
                intro = _RawTurn(label=None, segments=[], tag_start=start, act="introduction")
                raw.append(intro)
            target = intro
        _add_segment(target, line, start)
    if comments_at is not None:
        raw.extend(_comments(lines[comments_at + 1 :]))
    if not seen_tag:
        # Untagged prose: one statement per paragraph (blank-line separated; each line when none).
        meta.warnings.append("no speaker tags found; ingested as untagged statements, one per paragraph")
        raw = _paragraph_turns(text, body, [r for r in raw if r.act == "comment"])
    return raw, meta


def _add_segment(turn: _RawTurn, piece: str, start: int, sep: str = "\n") -> None:
    stripped = piece.strip()
    if not stripped:
        return
    lead = len(piece) - len(piece.lstrip())
    turn.segments.append(Segment(stripped, start + lead, sep=sep))


def _comments(lines: list[tuple[int, str]]) -> list[_RawTurn]:
    out: list[_RawTurn] = []
    current: _RawTurn | None = None
    for start, line in lines:
        m = _COMMENT_HEAD.match(line)
        if m:
            current = _RawTurn(
                label=None,
                segments=[],
                tag_start=start,
                act="comment",
                comment_author=m.group("name").strip(" -|·,"),
                comment_date=m.group("date").strip(),
            )
            out.append(current)
        elif current is not None and line.strip():
            _add_segment(current, line, start)
    return [c for c in out if c.segments]


def _paragraph_turns(text: str, body: int, tail: list[_RawTurn]) -> list[_RawTurn]:
    end = tail[0].tag_start if tail else len(text)
    lines = [(s, l) for s, l in _lines(text, body, end)]
    has_blank = any(not l.strip() for _, l in lines)
    out: list[_RawTurn] = []
    current: _RawTurn | None = None
    for start, line in lines:
        if not line.strip() or _HEADING.match(line):
            current = None
            continue
        if current is None or not has_blank:
            current = _RawTurn(label=None, segments=[], tag_start=start, act="statement")
            out.append(current)
        _add_segment(current, line, start)
    return out + tail


# --------------------------------------------------------------------------- VTT / SRT

_TIMING = re.compile(
    r"^\s*(?P<a>(?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})\s*-->\s*(?P<b>(?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})(?:\s+.*)?$"
)
_VOICE = re.compile(r"<v(?:\.[^ \t>]*)?[ \t]+([^>]+)>")
_MARKUP = re.compile(r"<[^>]*>")


def _seconds(stamp: str) -> float:
    parts = stamp.replace(",", ".").split(":")
    value = 0.0
    for p in parts:
        value = value * 60 + float(p)
    return value


def _strip_markup(line: str, start: int) -> list[tuple[str, int]]:
    """Pieces of a cue line outside <...> markup, with their source offsets."""
    pieces: list[tuple[str, int]] = []
    pos = 0
    for m in _MARKUP.finditer(line):
        if m.start() > pos:
            pieces.append((line[pos : m.start()], start + pos))
        pos = m.end()
    if pos < len(line):
        pieces.append((line[pos:], start + pos))
    return pieces


def _parse_cues(text: str, name: str, vtt: bool) -> tuple[list[_RawTurn], _Meta]:
    meta = _Meta()
    lines = list(_lines(text))
    if vtt and (not lines or not lines[0][1].lstrip("\ufeff").startswith("WEBVTT")):
        meta.warnings.append("missing WEBVTT header")
    blocks: list[list[tuple[int, str]]] = []
    block: list[tuple[int, str]] = []
    for start, line in lines:
        if line.strip():
            block.append((start, line))
        elif block:
            blocks.append(block)
            block = []
    if block:
        blocks.append(block)
    # "Speaker: text" prefixes; as in plain text, a single capitalised word before a colon
    # ("Note:", "So:") is a speaker only when it recurs
    prefix: dict[int, tuple[str, int]] = {}
    counts: dict[str, int] = {}
    for start, line in lines:
        if "-->" in line or _VOICE.search(line):
            continue
        hit = _tag_at(_MARKUP.sub(lambda mm: " " * len(mm.group()), line), {})
        if hit and len(hit[0].split()) <= 4:
            prefix[start] = hit
            counts[hit[0]] = counts.get(hit[0], 0) + 1
    accept = _tag_rule(counts, sum(1 for _, l in lines if l.strip() and "-->" not in l), {})
    prefix = {k: v for k, v in prefix.items() if accept(v[0])}
    raw: list[_RawTurn] = []
    current: _RawTurn | None = None
    bad = 0
    cues = 0
    backward: list[str] = []
    for blk in blocks:
        first = blk[0][1].strip()
        if vtt and (first.startswith(("WEBVTT", "NOTE", "STYLE", "REGION"))):
            continue
        t_index = next((i for i, (_, l) in enumerate(blk[:3]) if "-->" in l), None)
        if t_index is None:
            bad += 1
            continue
        m = _TIMING.match(blk[t_index][1])
        if not m:
            bad += 1
            meta.warnings.append(f"cue with a broken timestamp skipped: {blk[t_index][1].strip()[:60]!r}")
            continue
        a, b = _seconds(m.group("a")), _seconds(m.group("b"))
        if b < a:  # a cue that ends before it starts: keep its text, not its end
            backward.append(blk[t_index][1].strip()[:60])
            b = a
        cues += 1
        for start, line in blk[t_index + 1 :]:
            speaker = None
            body_at = 0
            voice = _VOICE.search(line)
            if voice:
                speaker, body_at = voice.group(1).strip(), voice.end()
            elif start in prefix:
                speaker, body_at = prefix[start]
            pieces = _strip_markup(line[body_at:], start + body_at)
            if speaker is None and current is None:
                speaker = ""
            if speaker is not None and (current is None or speaker != current.label):
                current = _RawTurn(label=speaker or None, segments=[], tag_start=start, start_time=a)
                if not speaker:
                    current.act = "statement"
                raw.append(current)
            assert current is not None
            for piece, at in pieces:
                _add_segment(current, piece, at, sep=" ")
            current.end_time = b
            if current.start_time is None:
                current.start_time = a
    if cues == 0:
        what = "WebVTT" if vtt else "SubRip"
        raise TranscriptError(f"{name}: no valid {what} cues found" + (f" ({bad} malformed)" if bad else ""))
    if backward:
        meta.warnings.append(
            f"{len(backward)} cue{'s' if len(backward) > 1 else ''} end before they start ({backward[0]!r}"
            + (", ..." if len(backward) > 1 else "") + "); their end taken as their start"
        )
    raw = [r for r in raw if r.segments]
    if not any(r.label for r in raw):
        meta.warnings.append("no speakers in cues; ingested as untagged statements")
    return raw, meta


# --------------------------------------------------------------------------- JSON


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_JSON_PLAIN = re.compile(r'[^"\\]+')
_JSON_WS = re.compile(r"[ \t\r\n]*")
_JSON_NEXT = re.compile(r'[][{}"]')
_JSON_SCALAR = re.compile(r"[^,}\]\s]+")
_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


def _clean(value: str) -> str:
    """A decoded JSON string as it can be stored: NULs dropped, lone surrogates replaced."""
    return _SURROGATE.sub("\ufffd", value.replace("\x00", ""))


def _json_string_segments(raw: str, quote_at: int) -> tuple[str, list[Segment], int]:
    """Decode the JSON string literal starting at raw[quote_at] == '"'.

    Returns (decoded, segments mapping it to the source, index after the closing quote).
    A "\\n" escape starts a new paragraph segment; other escapes map to their own range.
    A "\\u0000" escape gives no segment (NULs are not stored) and a lone surrogate becomes
    U+FFFD; the decoded string keeps them, as json.loads does."""
    assert raw[quote_at] == '"'
    i = quote_at + 1
    segs: list[Segment] = []
    sep = "\n"
    out: list[str] = []
    while True:
        m = _JSON_PLAIN.match(raw, i)
        if m:
            segs.append(Segment(m.group(), i, sep=sep))
            out.append(m.group())
            sep = ""
            i = m.end()
        ch = raw[i]
        if ch == '"':
            return "".join(out), segs, i + 1
        # a backslash escape
        esc = raw[i + 1]
        if esc == "u":
            code = int(raw[i + 2 : i + 6], 16)
            length = 6
            if 0xD800 <= code < 0xDC00 and raw[i + 6 : i + 8] == "\\u":
                low = int(raw[i + 8 : i + 12], 16)
                if 0xDC00 <= low < 0xE000:
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    length = 12
            decoded = chr(code)
        else:
            decoded = _ESCAPES.get(esc, esc)
            length = 2
        out.append(decoded)
        if decoded == "\n":
            sep = "\n"
        elif decoded != "\x00":
            segs.append(Segment(_clean(decoded), i, i + length, sep=sep))
            sep = ""
        i += length


def _skip_json_value(raw: str, i: int) -> int:
    """Where the (valid) JSON value starting at raw[i] ends."""
    ch = raw[i]
    if ch == '"':
        return _JSON_STRING.match(raw, i).end()  # type: ignore[union-attr]
    if ch not in "[{":
        m = _JSON_SCALAR.match(raw, i)
        return m.end() if m else i + 1
    depth = 0
    while True:
        m = _JSON_NEXT.search(raw, i)
        if m is None:
            return len(raw)
        c = m.group()
        if c == '"':
            i = _JSON_STRING.match(raw, m.start()).end()  # type: ignore[union-attr]
            continue
        depth += 1 if c in "[{" else -1
        i = m.end()
        if depth == 0:
            return i


def _json_members(raw: str, i: int):
    """(decoded key, key start, value start) of each member of the object at raw[i] == '{'."""
    i = _JSON_WS.match(raw, i + 1).end()  # type: ignore[union-attr]
    while raw[i] != "}":
        key_end = _JSON_STRING.match(raw, i).end()  # type: ignore[union-attr]
        key = json.loads(raw[i:key_end])  # keys compared decoded: "te\u0078t" is "text"
        value_at = _JSON_WS.match(raw, _JSON_WS.match(raw, key_end).end() + 1).end()  # type: ignore[union-attr]
        yield key, i, value_at
        i = _JSON_WS.match(raw, _skip_json_value(raw, value_at)).end()  # type: ignore[union-attr]
        if raw[i] == ",":
            i = _JSON_WS.match(raw, i + 1).end()  # type: ignore[union-attr]


def _json_elements(raw: str, i: int):
    """Start of each element of the array at raw[i] == '['."""
    i = _JSON_WS.match(raw, i + 1).end()  # type: ignore[union-attr]
    while raw[i] != "]":
        yield i
        i = _JSON_WS.match(raw, _skip_json_value(raw, i)).end()  # type: ignore[union-attr]
        if raw[i] == ",":
            i = _JSON_WS.match(raw, i + 1).end()  # type: ignore[union-attr]


def _turn_text_literals(raw: str) -> list[tuple[int, int] | None]:
    """For each element of the turns list of a valid JSON text: (where its "text" key starts,
    where the string value starts), the last "text" key winning as in json.loads; None when the
    element is not an object with a string "text". One pass over the source."""
    top = _JSON_WS.match(raw).end()  # type: ignore[union-attr]
    turns_at = top
    if raw[top] == "{":
        turns_at = -1
        for key, _, value_at in _json_members(raw, top):
            if key == "turns":
                turns_at = value_at
    if turns_at < 0 or raw[turns_at] != "[":
        return []
    found: list[tuple[int, int] | None] = []
    for el in _json_elements(raw, turns_at):
        hit = None
        if raw[el] == "{":
            for key, key_at, value_at in _json_members(raw, el):
                if key == "text":
                    hit = (key_at, value_at) if raw[value_at] == '"' else None
        found.append(hit)
    return found


def _json_time(value: Any, key: str, n: int, name: str, meta: _Meta) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and re.fullmatch(r"(?:\d+:)?\d{1,2}:\d{2}(?:[.,]\d+)?|\d+(?:\.\d+)?", value.strip()):
        seconds = _seconds(value.strip())
    else:
        raise TranscriptError(f'{name}: turn {n}: "{key}" must be seconds or HH:MM:SS')
    if not math.isfinite(seconds) or seconds < 0:
        meta.warnings.append(f'turn {n}: "{key}" is not a time ({value!r}); left out')
        return None
    return seconds


def _parse_json(text: str, name: str) -> tuple[list[_RawTurn], _Meta]:
    meta = _Meta()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TranscriptError(f"{name}: invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise TranscriptError(f"{name}: JSON too deeply nested to read") from None
    if isinstance(data, dict):
        if not isinstance(data.get("turns"), list):
            raise TranscriptError(f'{name}: JSON object must have a "turns" list (and optional "metadata")')
        md = data.get("metadata") or {}
        if not isinstance(md, dict):
            raise TranscriptError(f'{name}: JSON "metadata" must be an object')
        _apply_metadata({k: _clean(v) if isinstance(v, str) else v for k, v in md.items()}, meta)
        turns = data["turns"]
    elif isinstance(data, list):
        turns = data
    else:
        raise TranscriptError(f"{name}: JSON must be a list of turns or an object with \"turns\"")
    if not turns:
        raise TranscriptError(f"{name}: JSON has no turns")
    # each turn's "text" literal in the source, found by the JSON structure (keys decoded)
    literals = _turn_text_literals(text)
    raw: list[_RawTurn] = []
    for n, turn in enumerate(turns, 1):
        if not isinstance(turn, dict):
            raise TranscriptError(f"{name}: turn {n} must be an object with \"speaker\" and \"text\"")
        spk, body = turn.get("speaker"), turn.get("text")
        if not isinstance(body, str):
            raise TranscriptError(f'{name}: turn {n}: "text" must be a string')
        if spk is not None and not isinstance(spk, str):
            raise TranscriptError(f'{name}: turn {n}: "speaker" must be a string')
        start, end = (_json_time(turn.get(key), key, n, name, meta) for key in ("start", "end"))
        if start is not None and end is not None and end < start:
            meta.warnings.append(f"turn {n} ends ({end:g} s) before it starts ({start:g} s); its end left out")
            end = None
        segs: list[Segment] = []
        tag_start = raw[-1].tag_start if raw else 0
        hit = literals[n - 1] if n - 1 < len(literals) else None
        if hit is not None:
            decoded, segs, _ = _json_string_segments(text, hit[1])
            tag_start = hit[0]
            if decoded != body:  # cannot happen with valid JSON; never cite the wrong text
                segs = []
        segs = [s for s in segs if s.text.strip() or s.sep == ""]
        trimmed = _trim_segments(segs)
        raw.append(_RawTurn(label=_clean(spk or "").strip() or None, segments=trimmed, tag_start=tag_start,
                            start_time=start, end_time=end))
    if "\x00" in "".join(str(t.get("text")) + str(t.get("speaker")) for t in turns):
        meta.warnings.append("NUL characters in the JSON strings dropped")
    raw = [r for r in raw if r.segments]
    if not raw:
        raise TranscriptError(f"{name}: every turn's text is empty")
    if not any(r.label for r in raw):
        meta.warnings.append("no speakers in turns; ingested as untagged statements")
        for r in raw:
            r.act = "statement"
    return raw, meta


def _trim_segments(segs: list[Segment]) -> list[Segment]:
    """Strip leading/trailing whitespace of each paragraph's verbatim runs; drop empty ones."""
    out: list[Segment] = []
    for s in segs:
        if s.verbatim:
            lead = len(s.text) - len(s.text.lstrip()) if s.sep == "\n" else 0
            text = s.text[lead:]
            if not text.strip():
                if s.sep == "":
                    if out:
                        out.append(Segment(text, s.start + lead, sep=""))
                continue
            out.append(Segment(text, s.start + lead, sep=s.sep if out else "\n"))
        else:
            out.append(Segment(s.text, s.start, s.end, sep=s.sep if out else "\n"))
    # trailing whitespace of the last run
    while out and out[-1].verbatim and not out[-1].text.strip():
        out.pop()
    if out and out[-1].verbatim:
        t = out[-1].text.rstrip()
        out[-1] = Segment(t, out[-1].start, sep=out[-1].sep)
    return out


# --------------------------------------------------------------------------- build


def _split_label(label: str) -> tuple[str, str]:
    """'Hon. Pierre Poilievre (Carleton, CPC)' -> ('Hon. Pierre Poilievre', 'Carleton, CPC')."""
    m = re.match(r"^(.*?)\s*\((.*)\)\s*$", label)
    if m and m.group(1).strip():
        return m.group(1).strip(), m.group(2).strip()
    return label.strip(), ""


def _build(text: str, transcript_id: str, fmt: str, raw: list[_RawTurn], meta: _Meta) -> Transcript:
    speakers: dict[str, Speaker] = {}
    label_to_key: dict[str, str] = {}
    # front matter speakers by tag, and by name (a transcript may tag turns with full names)
    by_name = {fm.name.casefold(): fm for fm in meta.speakers.values() if fm.name}
    for r in raw:
        if r.label is None or r.label in label_to_key:
            continue
        fm = meta.speakers.get(r.label) or by_name.get(r.label.casefold())
        if fm is None:
            base, _ = _split_label(r.label)
            fm = meta.speakers.get(base) or by_name.get(base.casefold())
        if fm is not None:
            key = fm.tag
            speakers.setdefault(key, Speaker(tag=key, name=fm.name, role=fm.role or "other", description=fm.description))
            speakers[key].role = fm.role or ""  # type: ignore[assignment]
        else:
            key, inner = _split_label(r.label)
            sp = speakers.setdefault(key, Speaker(tag=key, name=key, role=""))  # type: ignore[arg-type]
            if inner:
                alias = re.split(r"\s*[(,]", inner)[0].strip()
                if alias and _looks_like_name(alias) and alias not in sp.aliases and alias != key:
                    sp.aliases.append(alias)
                if not sp.description:
                    sp.description = inner
        label_to_key[r.label] = key
    turns: list[Turn] = []
    for r in raw:
        if not r.segments:
            continue
        t = Turn(
            index=len(turns),
            speaker=label_to_key.get(r.label) if r.label else None,
            segments=r.segments,
            tag_start=r.tag_start,
            start_time=r.start_time,
            end_time=r.end_time,
            act=r.act or "statement",  # type: ignore[arg-type]
            comment_author=r.comment_author,
            comment_date=r.comment_date,
        )
        turns.append(t)
    if not turns:
        raise TranscriptError(f"{transcript_id}: no text found")
    preset = {i for i, r in enumerate(x for x in raw if x.segments) if r.act}
    assign_acts(turns, speakers, preset)
    title = meta.title or _title_from_id(transcript_id)
    transcript = Transcript(
        id=transcript_id,
        text=text,
        format=fmt,
        title=title,
        date=meta.date,
        source=meta.source,
        speakers=speakers,
        turns=turns,
        warnings=meta.warnings,
    )
    link_speakers(transcript)  # "AS" -> "Amar Shah" when the title or introduction names him
    return transcript


def _title_from_id(transcript_id: str) -> str:
    stem = PurePath(transcript_id).stem
    return re.sub(r"[_\-]+", " ", stem).strip() or transcript_id
