"""rag: question answering over interview transcripts, every claim cited to its passage.

Public API::

    from rag import Engine, load_settings
    engine = Engine(load_settings(store=".rag"))
    answer = engine.ask("What can we learn from Bangladesh?")
    answer.text, answer.citations, answer.retrieved, answer.abstained
"""

from ._errors import (
    ConfigError,
    IngestLockedError,
    QuestionSetError,
    RagError,
    StoreError,
    StoreMissingError,
    StoreUnavailableError,
    TranscriptError,
)
from ._ingest import FileResult, IngestReport, ingest
from ._parse import parse_bytes, parse_text
from ._library import (
    WarmUp,
    baselines,
    embedder,
    evaluate,
    load_questions,
    metric_keys,
    retrieval_keys,
    shared_engine,
    transcript_as_indexed,
)
from ._records import Answer, Citation, Passage, Retrieved, Segment, Speaker, Transcript, Turn
from ._settings import Settings, load_settings

__all__ = [
    "Answer", "Citation", "ConfigError", "Engine", "FileResult", "IngestLockedError", "IngestReport",
    "Passage", "QuestionSetError", "RagError", "Retrieved", "Segment", "Settings", "Speaker", "StoreError",
    "StoreMissingError", "StoreUnavailableError", "Transcript", "TranscriptError", "Turn", "WarmUp", "baselines",
    "embedder", "evaluate", "ingest", "load_questions", "load_settings", "metric_keys", "parse_bytes", "parse_text",
    "retrieval_keys", "shared_engine", "transcript_as_indexed",
]


def __getattr__(name: str):
    if name == "Engine":  # imported lazily: it pulls in the retrieval stack
        from ._engine import Engine

        return Engine
    raise AttributeError(name)
