"""Errors raised by rag, each with a ``help_message`` saying what to do next.

    RagError
    ├── ConfigError          bad settings (unknown model, bad TOML, bad flag value)
    ├── StoreError           the store is missing, locked or unreachable
    │   ├── StoreMissingError    no index yet: run `rag ingest`
    │   ├── StoreUnavailableError  Chroma server unreachable
    │   ├── StoreReadOnlyError   the store folder cannot be written (Chroma writes even to read)
    │   └── IngestLockedError    another ingest holds the lock
    ├── TranscriptError      one file cannot be read as a transcript (named, with the reason)
    └── QuestionSetError     an evaluation question set is malformed
"""

from __future__ import annotations


class RagError(Exception):
    """Base class. ``str(err)`` says what went wrong, ``help_message`` what to do next."""

    help_message: str = ""

    def __init__(self, message: str, help_message: str | None = None) -> None:
        super().__init__(message)
        if help_message is not None:
            self.help_message = help_message

    def full(self) -> str:
        return f"{self}\n{self.help_message}".strip()


class ConfigError(RagError):
    help_message = "Check your flags, RAG_* environment variables and rag.toml (see `rag --help`)."


class StoreError(RagError):
    help_message = "Check --store / RAG_STORE or --chroma-url / RAG_CHROMA_URL."


class StoreMissingError(StoreError):
    help_message = "Add transcripts first: `rag ingest corpus/` (or upload them in the app)."


class StoreUnavailableError(StoreError):
    help_message = (
        "Start the Chroma server (`chroma run --path DIR --host 127.0.0.1 --port 8000`) "
        "or check RAG_CHROMA_URL; the app reconnects by itself once it is back."
    )


class StoreReadOnlyError(StoreError):
    help_message = (
        "Chroma writes to its database even to read it: give this user write permission on the folder "
        "(e.g. chmod -R u+w DIR), or copy it to a writable place and pass that with --store."
    )


class IngestLockedError(StoreError):
    help_message = "Another `rag ingest` is writing to this store; wait for it to finish and run again."


class TranscriptError(RagError):
    help_message = "Fix or remove the file; the other files were ingested as usual."


class QuestionSetError(RagError):
    help_message = "Fix the question set (see docs/EVALUATION.md for the format)."
