"""Conversations kept on disk, per browser, with no account.

A browser is known by a random id in a cookie (``rag_browser``); its conversations are JSON files
``<store>/conversations/<browser id>/<conversation id>.json`` (the store folder, also in server
mode: the folder given by ``--store`` / ``RAG_STORE`` on the machine running the app). The open
conversation's id is in the page address (``?c=...``), so a reload reopens it.

Each file holds the questions, the answers with their citations and the cited passages
themselves (so an old conversation shows what was quoted even after the store changed). Writes
are atomic (a temporary file in the same folder, then a rename); a file that cannot be read is
named in the sidebar and skipped, never a crash.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag import Answer, Citation, Passage, Retrieved, Segment, Settings

FORMAT = 1
COOKIE = "rag_browser"
_ID = re.compile(r"^[a-f0-9]{8,32}$")
TITLE_CHARS = 60


def valid_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_ID.match(value))


def folder(settings: Settings, browser: str) -> Path:
    if not valid_id(browser):
        raise ValueError("bad browser id")
    return Path(settings.store).resolve() / "conversations" / browser


def title_of(question: str) -> str:
    q = " ".join(str(question).split())
    return q if len(q) <= TITLE_CHARS else q[: TITLE_CHARS - 1].rstrip() + "…"


# --------------------------------------------------------------------------- (de)serialising


def _passage(p: Passage) -> dict[str, Any]:
    d = dataclasses.asdict(p)
    d["turns"] = list(p.turns)
    return d


_PASSAGE_FIELDS = {f.name for f in dataclasses.fields(Passage)}


def _passage_from(d: dict[str, Any]) -> Passage:
    d = {k: v for k, v in d.items() if k in _PASSAGE_FIELDS}  # a field dropped since is ignored
    d["segments"] = [Segment(**s) for s in d.get("segments", [])]
    d["question_segments"] = [Segment(**s) for s in d.get("question_segments", [])]
    d["turns"] = tuple(d["turns"])
    return Passage(**d)


# every field of an Answer / Citation is kept (a field added to rag later is kept too, a field
# dropped since is ignored on reading); passages are stored whole
_ANSWER_FIELDS = [f.name for f in dataclasses.fields(Answer) if f.name not in ("citations", "retrieved")]
_CITATION_FIELDS = [f.name for f in dataclasses.fields(Citation) if f.name not in ("passage", "highlights")]


def answer_to_dict(a: Answer) -> dict[str, Any]:
    d = {k: getattr(a, k) for k in _ANSWER_FIELDS}
    d["citations"] = [
        {**{k: getattr(c, k) for k in _CITATION_FIELDS}, "highlights": [list(h) for h in c.highlights],
         "passage": _passage(c.passage)}
        for c in a.citations
    ]
    d["retrieved"] = [{"rank": r.rank, "score": float(r.score), "passage": _passage(r.passage)} for r in a.retrieved]
    return d


def answer_from_dict(d: dict[str, Any]) -> Answer:
    return Answer(
        **{k: v for k, v in d.items() if k in _ANSWER_FIELDS},
        citations=[
            Citation(**{k: v for k, v in c.items() if k in _CITATION_FIELDS},
                     passage=_passage_from(c["passage"]), highlights=[tuple(h) for h in c["highlights"]])
            for c in d.get("citations", [])
        ],
        retrieved=[Retrieved(passage=_passage_from(r["passage"]), score=float(r["score"]), rank=int(r["rank"]))
                   for r in d.get("retrieved", [])],
    )


def message_to_dict(m: dict[str, Any]) -> dict[str, Any]:
    out = {k: m.get(k) for k in ("id", "question", "filters", "k", "mode", "error", "help", "feedback") if m.get(k) is not None}
    if m.get("answer") is not None:
        out["answer"] = answer_to_dict(m["answer"])
    return out


def message_from_dict(d: dict[str, Any]) -> dict[str, Any]:
    m = {k: v for k, v in d.items() if k != "answer"}
    m["answer"] = answer_from_dict(d["answer"]) if d.get("answer") is not None else None
    return m


# --------------------------------------------------------------------------- files


class Unreadable(Exception):
    """A conversation file that is not what we wrote (damaged, edited, another format)."""


@dataclass
class Summary:
    id: str
    title: str
    updated: float
    questions: int


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".conv-", suffix=".part")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, ensure_ascii=False, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise Unreadable(f"{path.name}: {type(exc).__name__}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("messages"), list):
        raise Unreadable(f"{path.name}: not a conversation file")
    return data


def save(settings: Settings, browser: str, cid: str, chat: list[dict[str, Any]], title: str | None = None) -> None:
    """Write the conversation (atomically). The title is kept from the file unless given."""
    if not valid_id(cid):
        raise ValueError("bad conversation id")
    path = folder(settings, browser) / f"{cid}.json"
    old_title, created = None, time.time()
    if path.exists():
        try:
            old = _read(path)
            old_title, created = old.get("title"), float(old.get("created", created))
        except Unreadable:
            pass  # replaced by this good copy
    data = {
        "format": FORMAT, "id": cid, "created": created, "updated": time.time(),
        "title": title or old_title or (title_of(chat[0]["question"]) if chat else "New chat"),
        "messages": [message_to_dict(m) for m in chat],
    }
    _write_atomic(path, data)


def load(settings: Settings, browser: str, cid: str) -> tuple[str, list[dict[str, Any]]] | None:
    """(title, messages) of a conversation; None if there is none; Unreadable if damaged."""
    if not valid_id(cid):
        return None
    path = folder(settings, browser) / f"{cid}.json"
    if not path.exists():
        return None
    data = _read(path)
    try:
        return str(data.get("title") or "Untitled"), [message_from_dict(m) for m in data["messages"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise Unreadable(f"{path.name}: {type(exc).__name__}: {exc}") from exc


_summaries: dict[tuple[str, int, int], Summary | str] = {}


def listing(settings: Settings, browser: str) -> tuple[list[Summary], list[str]]:
    """This browser's conversations, most recent first, and the files that could not be read."""
    out: list[Summary] = []
    bad: list[str] = []
    try:
        paths = sorted(folder(settings, browser).glob("*.json"))
    except (OSError, ValueError):
        return [], []
    for path in paths:
        if not valid_id(path.stem):
            bad.append(f"{path.name}: not a conversation file name")
            continue
        try:
            st = path.stat()
        except OSError:
            continue  # deleted meanwhile
        key = (str(path), st.st_mtime_ns, st.st_size)
        found = _summaries.get(key)
        if found is None:  # read once per version of the file (the sidebar lists on every rerun)
            try:
                data = _read(path)
                found = Summary(path.stem, str(data.get("title") or "Untitled"), float(data.get("updated", 0.0)),
                                len(data["messages"]))
            except (Unreadable, TypeError, ValueError) as exc:
                found = str(exc)
            if len(_summaries) > 10000:
                _summaries.clear()
            _summaries[key] = found
        if isinstance(found, Summary):
            out.append(found)
        else:
            bad.append(found)
    out.sort(key=lambda s: -s.updated)
    return out, bad


def rename(settings: Settings, browser: str, cid: str, title: str) -> None:
    path = folder(settings, browser) / f"{cid}.json"
    data = _read(path)
    data["title"] = " ".join(title.split())[:200] or data.get("title") or "Untitled"
    data["updated"] = time.time()
    _write_atomic(path, data)


def delete(settings: Settings, browser: str, cid: str) -> None:
    if valid_id(cid):
        (folder(settings, browser) / f"{cid}.json").unlink(missing_ok=True)
