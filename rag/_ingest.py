"""Ingest: find files, parse, chunk, embed and store them; one result per file."""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from ._chunk import chunk_transcript
from ._embed import Embedder
from ._errors import TranscriptError
from ._parse import SUFFIXES, parse_bytes, transcript_id_for
from ._records import Passage, Transcript
from ._settings import Settings
from ._store import Store

_WRITE_GROUP = 1000  # passages per write: files are written together up to about this many


@dataclass
class FileResult:
    path: str
    transcript: str
    status: str  # added | updated | unchanged | failed | removed
    passages: int = 0
    speakers: int = 0
    reason: str = ""
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class IngestReport:
    files: list[FileResult]
    notes: list[str] = field(default_factory=list)  # run-level remarks (e.g. why --prune was skipped)

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.status == "failed"]

    def summary(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.files:
            out[f.status] = out.get(f.status, 0) + 1
        out["passages"] = sum(f.passages for f in self.files if f.status in ("added", "updated"))
        return out


_MISSING = ("no such file or folder", "cannot list folder")


def discover(paths: Iterable[str | Path]) -> tuple[list[tuple[Path, str]], list[FileResult]]:
    """(file, transcript id) pairs under the given files and folders (recursive; links to
    folders are followed, but never into a loop), and failures for paths that do not exist,
    folders that cannot be listed, folder links that loop, and two files claiming one id."""
    found: list[tuple[Path, str]] = []
    failures: list[FileResult] = []
    seen: dict[str, Path] = {}

    def add(f: Path, tid: str) -> None:
        other = seen.get(tid)
        if other is None:
            seen[tid] = f
            found.append((f, tid))
        elif _real(other) != _real(f):
            failures.append(FileResult(str(f), "", "failed", reason=f"same transcript id as {other}; give their folder instead, or rename one"))

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            errors: list[OSError] = []
            visited: set[str] = set()
            for dirpath, dirnames, filenames in os.walk(path, onerror=errors.append, followlinks=True):
                real = os.path.realpath(dirpath)
                if real in visited:
                    dirnames[:] = []
                    continue
                visited.add(real)
                for d in list(dirnames):
                    sub = os.path.join(dirpath, d)
                    target = os.path.realpath(sub)
                    if os.path.islink(sub) and (target == real or real.startswith(target.rstrip(os.sep) + os.sep)):
                        dirnames.remove(d)  # a link back to this folder or one above it: a loop
                        failures.append(FileResult(sub, "", "failed", reason="folder link loops back to a folder above it; skipped"))
                dirnames.sort()
                for name in sorted(filenames):
                    f = Path(dirpath) / name
                    if f.suffix.lower() not in SUFFIXES or name.startswith("."):
                        continue
                    add(f, transcript_id_for(f, path))
            for err in errors:
                failures.append(FileResult(str(err.filename), "", "failed", reason=f"{_MISSING[1]}: {err.strerror}"))
        elif path.exists() or path.is_symlink():
            add(path, transcript_id_for(path, None))
        else:
            failures.append(FileResult(str(path), "", "failed", reason=_MISSING[0]))
    return found, failures


def _real(path: Path) -> str:
    try:
        return os.path.realpath(path)
    except (OSError, RuntimeError):  # a link loop
        return str(path.absolute())


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ingest(
    paths: Iterable[str | Path],
    settings: Settings,
    *,
    prune: bool = False,
    embedder: Embedder | None = None,
    on_file: Callable[[FileResult], None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    wait_for_lock: bool = False,
) -> IngestReport:
    """Ingest files and folders into the store. Never raises for a bad file: it is reported."""
    files, results = discover(paths)
    # pruning after a typo in a folder name would remove everything: only prune complete runs
    discovery_failed = any(r.reason.startswith(_MISSING) for r in results)
    notes: list[str] = []
    for r in results:
        if on_file:
            on_file(r)
    store = Store(settings, create=True)
    with store.ingest_lock(wait=wait_for_lock), contextlib.ExitStack() as writing:
        embedder = embedder or Embedder(settings.model)
        notes += store.recover(lambda texts: embedder.encode(texts, batch_size=settings.batch_size))
        writing.enter_context(store.writing())  # from here on, a kill leaves the mark for recover()
        manifest = store.manifest()
        if store.repair(manifest):
            notes.append("removed passages left behind by an interrupted ingest")
        todo: list[tuple[Transcript, list[Passage], str, FileResult]] = []
        limit = int(settings.max_file_mb * 1024 * 1024)
        for i, (path, tid) in enumerate(files):
            if progress:
                progress("read", i, len(files))
            result = FileResult(str(path), tid, "failed")
            try:
                size = path.stat().st_size
                if size > limit:
                    raise TranscriptError(f"{tid}: file is {size / 1048576:.1f} MB, over the {settings.max_file_mb:g} MB limit")
                if not path.is_file():
                    raise TranscriptError(f"{tid}: not a regular file")
                data = path.read_bytes()
                digest = file_hash(data)
                old = manifest.get(tid)
                if old is not None and old.hash == digest:
                    result.status, result.passages, result.speakers = "unchanged", old.n_passages, len(old.speakers)
                else:
                    transcript = parse_bytes(data, tid, path.suffix)
                    passages = chunk_transcript(transcript, embedder.count_tokens, embedder.max_tokens)
                    if not passages:
                        raise TranscriptError(f"{tid}: nothing to index (only procedural turns)")
                    result.status = "updated" if old is not None else "added"
                    result.passages, result.speakers = len(passages), len(transcript.speakers)
                    result.warnings = list(transcript.warnings)
                    todo.append((transcript, passages, digest, result))
            except TranscriptError as exc:
                result.reason = str(exc).removeprefix(f"{tid}: ")
            except OSError as exc:
                result.reason = f"cannot read: {exc.strerror or exc}"
            except RecursionError:
                result.reason = "too deeply nested to read"
            except Exception as exc:  # a bug must not stop the other files; say what it was
                result.reason = f"could not be read ({type(exc).__name__}: {exc})"
            results.append(result)
            if result.status in ("unchanged", "failed") and on_file:
                on_file(result)
        # Embed all new passages in one pass (the model batches by length), then write per file.
        texts = [p.embed_text for _, ps, _, _ in todo for p in ps]
        done = 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress("embed", done, len(texts))

        # nothing new (every file unchanged or failed): do not even load the model
        vectors = embedder.encode(texts, batch_size=settings.batch_size, progress=tick) if texts else None
        # written in groups of files: Chroma's cost per write call is high (see Store.write_transcripts)
        groups: list[list[tuple[Transcript, list[Passage], str, FileResult]]] = [[]]
        size = 0
        for item in todo:
            if size >= _WRITE_GROUP:
                groups.append([])
                size = 0
            groups[-1].append(item)
            size += len(item[1])
        at = 0
        for group in groups:
            items = []
            for transcript, passages, digest, _ in group:
                items.append((transcript, passages, vectors[at : at + len(passages)], digest))
                at += len(passages)
            store.write_transcripts(items)
            if on_file:
                for *_, result in group:
                    on_file(result)
        if prune and discovery_failed:
            notes.append("--prune skipped: some of the given paths could not be found or listed")
        elif prune:
            present = {tid for _, tid in files}
            for tid in sorted(set(manifest) - present):
                store.remove_transcript(tid)
                r = FileResult(tid, tid, "removed")
                results.append(r)
                if on_file:
                    on_file(r)
    return IngestReport(results, notes)
