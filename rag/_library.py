"""Public helpers for applications built on rag (the chat app uses these, never rag._x modules).

* ``transcript_as_indexed``: a transcript's turns rebuilt from its stored passages (what the
  engine searches and cites), not from parsing the source file again with today's parser;
* ``load_questions`` / ``evaluate`` / ``baselines`` / ``metric_keys`` / ``retrieval_keys``: the
  evaluation runner;
* ``embedder``: an embedding model for ``rag.ingest``;
* ``shared_engine`` / ``warm_up``: one Engine per settings per process, warmed in a background
  thread, with a truthful status ("Loading 7,957 passages…", then how long it took).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from ._records import Passage, Segment, Speaker, Transcript, Turn
from ._settings import Settings

# --------------------------------------------------------------------------- transcripts


def transcript_as_indexed(transcript_id: str, passages: Sequence[Passage], info: Any = None, source: str = "") -> Transcript:
    """The transcript as the store holds it: one turn per indexed answer (its parts joined), per
    question that prompted one, per introduction, comment or statement, in document order, with
    the stored source offsets. Turns the chunker did not index (procedural remarks such as "Thank
    you") are not in the store and so not here: the gaps show in ``Turn.index``."""
    speakers: dict[str, Speaker] = {}
    tag_of: dict[str, str] = {}
    for sp in getattr(info, "speakers", None) or []:
        speakers[sp.tag] = sp
        for name in (sp.name, sp.tag, *sp.names):
            if name:
                tag_of.setdefault(name, sp.tag)
    turns: dict[int, Turn] = {}
    for p in sorted((p for p in passages if p.transcript == transcript_id), key=lambda p: (p.turns[1], p.part, p.start_char)):
        first, last = p.turns
        if p.question and first != last and first not in turns:
            turns[first] = Turn(
                index=first, speaker=tag_of.get(p.question_speaker, p.question_speaker or None),
                segments=[Segment(s.text, s.start, s.end, s.sep) for s in p.question_segments],
                tag_start=p.question_segments[0].start if p.question_segments else p.start_char, act="question",
            )
        segs = [Segment(s.text, s.start, s.end, s.sep) for s in p.segments]
        if last in turns and turns[last].act != "question":  # the next part of a split answer
            t = turns[last]
            if segs and t.segments:
                gap = source[t.segments[-1].end:segs[0].start] if source else ""
                segs[0].sep = "\n" if "\n" in gap else (" " if gap else segs[0].sep)
            t.segments.extend(segs)
            if p.end_time is not None:
                t.end_time = p.end_time
            continue
        act = {"answer": "answer", "introduction": "introduction", "comment": "comment"}.get(p.kind, "statement")
        turns[last] = Turn(
            index=last,
            speaker=None if act in ("introduction", "comment") else tag_of.get(p.speaker, p.speaker or None),
            segments=segs,
            tag_start=segs[0].start if segs else p.start_char,
            start_time=p.start_time,
            end_time=p.end_time,
            act=act,
            comment_author=p.speaker if act == "comment" else None,
            comment_date=p.comment_date if act == "comment" else None,
        )
    return Transcript(
        id=transcript_id,
        text=source,
        format=getattr(info, "format", "") or "",
        title=getattr(info, "title", "") or transcript_id,
        date=getattr(info, "date", "") or "",
        source=getattr(info, "source", "") or "",
        speakers=speakers,
        turns=[turns[i] for i in sorted(turns)],
        warnings=list(getattr(info, "warnings", []) or []),
    )


# --------------------------------------------------------------------------- evaluation


def load_questions(path: str | Path) -> list[dict[str, Any]]:
    """A question set (JSONL or YAML), checked; a bad file raises QuestionSetError."""
    from ._evaluate import load_questions as _load

    return _load(path)


def evaluate(questions: str | Path | list[dict[str, Any]], settings: Settings, **kwargs: Any) -> dict[str, Any]:
    """Run a question set through the engine (and baselines); the `rag eval --json` report."""
    from ._evaluate import evaluate as _evaluate

    return _evaluate(questions, settings, **kwargs)


def baselines() -> dict[str, str]:
    """The baselines ``evaluate`` can compare with: name -> what it is."""
    from ._baselines import DESCRIPTIONS, NAMES

    return {n: DESCRIPTIONS.get(n, "") for n in NAMES}


def metric_keys(k: int) -> list[str]:
    """Every metric of a report, in display order, for ``k`` passages."""
    from ._evaluate import metric_keys as _keys

    return _keys(k)


def retrieval_keys(k: int) -> list[str]:
    from ._evaluate import retrieval_keys as _keys

    return _keys(k)


# --------------------------------------------------------------------------- models and engines


def embedder(model: str):
    """An embedding model to pass to ``rag.ingest(..., embedder=...)`` (loading one takes seconds:
    keep it for the next ingest)."""
    from ._embed import Embedder

    return Embedder(model)


@dataclass
class WarmUp:
    """What a shared engine is doing: ``message`` says it in words, with the passage count."""

    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    passages: int | None = None
    transcripts: int | None = None
    error: str = ""
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def ready(self) -> bool:
        return self.done.is_set()

    @property
    def seconds(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def message(self) -> str:
        if self.error:
            return f"Could not load the index: {self.error}"
        if self.ready:
            n = f"{self.passages:,} passages" if self.passages is not None else "the index"
            return f"Ready: {n} loaded in {self.seconds:.1f} s."
        if self.passages is None:
            return f"Opening the index and loading the model… ({self.seconds:.0f} s so far)"
        return f"Loading {self.passages:,} passages… ({self.seconds:.0f} s so far)"


_engines: dict[str, tuple[Any, WarmUp]] = {}
_engines_lock = threading.Lock()


def shared_engine(settings: Settings, *, on_ready: Callable[[WarmUp], None] | None = None):
    """The one Engine for these settings in this process, created on the first call, which also
    starts warming it up (model, store view, sentence vectors) in a background thread. Returns
    (engine, WarmUp). ``rag ui`` calls it before the server starts, so the app's first visitor
    finds the engine loaded."""
    key = settings.model_dump_json()
    with _engines_lock:
        if key in _engines:
            return _engines[key]
        from ._engine import Engine

        engine = Engine(settings)
        status = WarmUp()
        _engines[key] = (engine, status)
    threading.Thread(target=_warm, args=(engine, status, on_ready), name="rag-warm-up", daemon=True).start()
    return engine, status


def _warm(engine: Any, status: WarmUp, on_ready: Callable[[WarmUp], None] | None) -> None:
    from ._errors import RagError

    try:
        try:
            infos = engine.transcripts()
            status.passages = sum(i.n_passages for i in infos.values())
            status.transcripts = len(infos)
            engine.warm()
            engine.ask("warm up", llm=False)
        except RagError as exc:  # no store yet / server down: the app says so; the engine reconnects later
            status.error = str(exc)
    except Exception as exc:  # never let warming up break the app
        status.error = f"{type(exc).__name__}: {exc}"
    finally:
        status.finished = time.monotonic()
        status.done.set()
        if on_ready is not None:
            on_ready(status)
