"""Typed records passed between pipeline stages. No LangChain or Chroma types here."""

from __future__ import annotations

from dataclasses import dataclass, field, asdict
from typing import Any, Literal

Role = Literal["interviewer", "interviewee", "other"]
Kind = Literal["answer", "introduction", "comment", "statement"]
TurnAct = Literal["question", "answer", "procedural", "statement", "introduction", "comment"]


@dataclass(slots=True)
class Segment:
    """A run of text and where it stands in the source: ``source[start:end]``.

    Usually verbatim (``end - start == len(text)``); a decoded escape (JSON) maps to its whole
    source range. ``sep`` is what joins it to the segment before it ("\n" between paragraphs,
    "" within one)."""

    text: str
    start: int
    end: int = -1
    sep: str = "\n"

    def __post_init__(self) -> None:
        if self.end < 0:
            self.end = self.start + len(self.text)

    @property
    def verbatim(self) -> bool:
        return self.end - self.start == len(self.text)


@dataclass
class Speaker:
    tag: str  # the label as written in the transcript, canonical form
    name: str  # display name
    role: Role = "other"
    description: str = ""
    aliases: list[str] = field(default_factory=list)
    turns: int = 0
    # the forms the person goes by when the transcript links a tag to a full name (rag._identity):
    # full name, first name and surname as written alone, the tag ("Amar Shah", "Amar", "AS")
    names: list[str] = field(default_factory=list)


@dataclass
class Turn:
    index: int
    speaker: str | None  # canonical speaker tag; None for introduction
    segments: list[Segment]  # the turn's text (tag removed), verbatim pieces of the source
    tag_start: int  # where the turn starts in the source (including its speaker tag)
    start_time: float | None = None
    end_time: float | None = None
    act: TurnAct = "statement"
    comment_author: str | None = None
    comment_date: str | None = None

    @property
    def text(self) -> str:
        return join_segments(self.segments)

    @property
    def start(self) -> int:
        return self.segments[0].start if self.segments else self.tag_start

    @property
    def end(self) -> int:
        return self.segments[-1].end if self.segments else self.tag_start


def join_segments(segments: list[Segment]) -> str:
    return "".join((s.sep if i else "") + s.text for i, s in enumerate(segments))


@dataclass
class Transcript:
    id: str
    text: str  # the decoded source text; all offsets point into it
    format: str
    title: str
    date: str = ""
    source: str = ""
    speakers: dict[str, Speaker] = field(default_factory=dict)
    turns: list[Turn] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Passage:
    """One indexed, citable unit: an answer (or part of one) with the question that prompted it."""

    chunk_id: str
    transcript: str
    title: str
    date: str
    kind: Kind
    speaker: str
    role: Role
    text: str  # the citable text (the answer part)
    segments: list[Segment]  # where ``text`` stands in the source
    turns: tuple[int, int]  # first and last turn index (question turn included)
    start_char: int  # from the question's start (when adjacent) to the answer's end
    end_char: int
    question: str = ""
    question_speaker: str = ""
    part: int = 0  # 1-based part number when an answer was split, else 0
    start_time: float | None = None
    end_time: float | None = None
    comment_date: str = ""
    embed_question: str = ""  # the (possibly shortened) question that is embedded with the text
    question_segments: list[Segment] = field(default_factory=list)  # where ``question`` stands

    @property
    def embed_text(self) -> str:
        return embed_text(self.question_speaker, self.embed_question, self.speaker, self.text)

    def source_spans(self, start: int, end: int) -> list[tuple[int, int]]:
        """Map a [start, end) range of ``text`` to ranges in the source text."""
        return map_spans(self.segments, start, end)

    def question_spans(self, start: int, end: int) -> list[tuple[int, int]]:
        """Map a [start, end) range of ``question`` to ranges in the source text."""
        return map_spans(self.question_segments, start, end)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("segments")
        d.pop("question_segments")
        d["turns"] = list(self.turns)
        return d


def embed_text(question_speaker: str, question: str, speaker: str, text: str) -> str:
    """What the model reads for a passage: who asked what, then who answered what. Names make
    "what did Hopkins say" find Hopkins's answers by meaning as well as by words."""
    asked = (f"{question_speaker}: {question}" if question_speaker else question) if question else ""
    said = f"{speaker}: {text}" if speaker else text
    return f"{asked}\n{said}" if asked else said


def map_spans(segments: list[Segment], start: int, end: int) -> list[tuple[int, int]]:
    """Source ranges covering text[start:end] of the joined segments; adjacent ranges merge."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for i, seg in enumerate(segments):
        if i:
            pos += len(seg.sep)
        seg_lo, seg_hi = pos, pos + len(seg.text)
        lo, hi = max(start, seg_lo), min(end, seg_hi)
        if lo < hi:
            if seg.verbatim:
                a, b = seg.start + lo - seg_lo, seg.start + hi - seg_lo
            else:
                a, b = seg.start, seg.end
            if spans and spans[-1][1] == a:
                spans[-1] = (spans[-1][0], b)
            else:
                spans.append((a, b))
        pos = seg_hi
    return spans


CitedField = Literal["text", "question"]


@dataclass
class Citation:
    """One quote of one person. ``field`` says whose words in the passage are quoted: "text",
    the answer (its speaker is the passage's ``speaker``), or "question", the asker's own words
    (``question_speaker``). ``speaker`` and ``role`` name that person; left empty, they are
    taken from the passage (the answerer, or the asker with role "other" when unknown)."""

    n: int
    passage: Passage
    quote: str
    highlights: list[tuple[int, int]]  # ranges in the source text
    speaker: str = ""
    role: Role | Literal[""] = ""
    field: CitedField = "text"

    def __post_init__(self) -> None:
        if self.field == "question":
            self.speaker = self.speaker or self.passage.question_speaker
            self.role = self.role or "other"
        else:
            self.speaker = self.speaker or self.passage.speaker
            self.role = self.role or self.passage.role


@dataclass
class Retrieved:
    passage: Passage
    score: float
    rank: int = 0


@dataclass
class Answer:
    question: str
    text: str
    citations: list[Citation]
    retrieved: list[Retrieved]
    abstained: bool
    timings_ms: dict[str, float] = field(default_factory=dict)
    notice: str = ""
    resolved_question: str = ""
    filters: dict[str, Any] = field(default_factory=dict)
    evidence: float = 0.0  # how strongly the best sentence matches the question (cosine)
    speakers: list[str] = field(default_factory=list)  # speakers the question referred to
    premise: str = ""  # why the answer does not take the question as put ("speaker": others said it;
    # "value": a year, percentage or amount the question states is not in the passages; "type": no
    # passage gives the amount of money or the time the question asks for)

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "abstained": self.abstained,
            "premise": self.premise,
            "citations": [
                {
                    "n": c.n,
                    "chunk_id": c.passage.chunk_id,
                    "transcript": c.passage.transcript,
                    "speaker": c.speaker,
                    "role": c.role,
                    "field": c.field,
                    "start_char": c.passage.start_char,
                    "end_char": c.passage.end_char,
                    "quote": c.quote,
                    "highlights": [list(h) for h in c.highlights],
                }
                for c in self.citations
            ],
            "retrieved": [
                {
                    "rank": r.rank,
                    "chunk_id": r.passage.chunk_id,
                    "transcript": r.passage.transcript,
                    "speaker": r.passage.speaker,
                    "start_char": r.passage.start_char,
                    "end_char": r.passage.end_char,
                    "score": round(float(r.score), 6),
                }
                for r in self.retrieved
            ],
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }
