"""Ingest: find files, parse, chunk, embed and store them; one result per file."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from . import _derived, _snapshot
from ._chunk import chunk_transcript
from ._embed import Embedder
from ._errors import StoreError, StoreUnavailableError, TranscriptError
from ._parse import SUFFIXES, parse_bytes, transcript_id_for
from ._records import Passage, Transcript
from ._settings import Settings
from ._store import Store, collection_names

_WRITE_GROUP = 1000  # passages per write: files are written together up to about this many
_SOURCES = "sources.json"  # in the store folder: transcript id -> absolute path of the file it came from
_SURROGATE = re.compile("[\ud800-\udfff]")  # a lone surrogate: no UTF-8 form, so Chroma cannot store it


@dataclass
class FileResult:
    path: str
    transcript: str
    status: str  # added | updated | unchanged | duplicate | failed | removed
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
    folders that cannot be listed, folder links that loop, two files claiming one id, names that
    are not UTF-8, and links in a folder to files or folders outside the folders given."""
    found, failures, _ = _discover(list(paths))
    return found, failures


def _discover(paths: list[str | Path]) -> tuple[list[tuple[Path, str]], list[FileResult], list[str]]:
    """``discover``, and the folders given in which no transcript file was found."""
    found: list[tuple[Path, str]] = []
    failures: list[FileResult] = []
    seen: dict[str, Path] = {}
    empty: list[str] = []
    # a link in a folder is followed only when its target stays inside the folders given
    roots = [_real(Path(p)).rstrip(os.sep) for p in paths if Path(p).is_dir()]

    def inside(real: str) -> bool:
        return any(real == r or real.startswith(r + os.sep) for r in roots)

    def add(f: Path, tid: str) -> None:
        if not _printable(tid):
            failures.append(FileResult(_shown(str(f)), _shown(tid), "failed",
                                       reason="file or folder name is not valid UTF-8 (shown with \\x escapes); rename it"))
            return
        other = seen.get(tid)
        if other is None:
            seen[tid] = f
            found.append((f, tid))
        elif _real(other) != _real(f):
            failures.append(FileResult(_shown(str(f)), "", "failed", reason=f"same transcript id as {_shown(str(other))}; give their folder instead, or rename one"))

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            before = len(found)
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
                    if not os.path.islink(sub):
                        continue
                    target = os.path.realpath(sub)
                    if target == real or real.startswith(target.rstrip(os.sep) + os.sep):
                        dirnames.remove(d)  # a link back to this folder or one above it: a loop
                        failures.append(FileResult(_shown(sub), "", "failed", reason="folder link loops back to a folder above it; skipped"))
                    elif not inside(target):
                        dirnames.remove(d)
                        failures.append(FileResult(_shown(sub), "", "failed", reason=(
                            f"link to a folder outside the folders given ({_shown(target)}); not followed "
                            "(give that folder itself to ingest it)")))
                dirnames.sort()
                for name in sorted(filenames):
                    f = Path(dirpath) / name
                    if f.suffix.lower() not in SUFFIXES or name.startswith("."):
                        continue
                    target = _real(f)
                    if not inside(target):
                        failures.append(FileResult(_shown(str(f)), _shown(transcript_id_for(f, path)), "failed", reason=(
                            f"link to a file outside the folders given ({_shown(target)}); not followed "
                            "(give that file itself to ingest it)")))
                        continue
                    add(f, transcript_id_for(f, path))
            for err in errors:
                failures.append(FileResult(_shown(str(err.filename)), "", "failed", reason=f"{_MISSING[1]}: {err.strerror}"))
            if len(found) == before:
                empty.append(_shown(str(path)))
        elif path.exists() or path.is_symlink():
            add(path, transcript_id_for(path, None))  # a file given by name is read as asked, link or not
        else:
            failures.append(FileResult(_shown(str(path)), "", "failed", reason=_MISSING[0]))
    return found, failures, empty


def _real(path: Path) -> str:
    try:
        return os.path.realpath(path)
    except (OSError, RuntimeError):  # a link loop
        return str(path.absolute())


def _printable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _shown(text: str) -> str:
    """``text`` as it can be printed and stored: bytes of a name that are not UTF-8 (which Python
    keeps as lone surrogates) become \\xNN escapes, other lone surrogates \\uNNNN."""
    if _printable(text):
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def _invalid_character(t: Transcript) -> str:
    """Where a parsed transcript holds a character that has no UTF-8 form (a lone surrogate, as a
    \\ud800 escape in YAML front matter or JSON gives): '' if nowhere. Chroma cannot store it."""
    fields: list[tuple[str, str]] = [("title", t.title), ("date", t.date), ("source", t.source)]
    for sp in t.speakers.values():
        fields += [("speaker names", x) for x in (sp.tag, sp.name, *sp.aliases, *sp.names)]
        fields.append(("speaker descriptions", sp.description))
    for turn in t.turns:
        fields += [("text", seg.text) for seg in turn.segments]
        fields += [("comment", x or "") for x in (turn.speaker, turn.comment_author, turn.comment_date)]
    for where, value in fields:
        m = _SURROGATE.search(value or "")
        if m:
            return f"an invalid character (U+{ord(m.group()):04X}, half of a UTF-16 pair) in its {where}"
    return ""


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while one file is parsed or chunked: the objects made are
    freed by reference counting, and each full collection would walk every object the process
    holds (the model and tokenizer: about 180,000), which made the time of a large file grow
    faster than its size (16,000 JSON turns: 0.81 s CPU with it, 0.71 s without)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Sources:
    """Where each stored transcript came from: ``sources.json`` in the store folder, id -> absolute
    path, so that a file from another place that has the id of a stored transcript is refused
    instead of silently replacing it. Embedded stores only (a server's clients do not share a
    folder); a store written before this file existed adopts the paths of its next ingest."""

    def __init__(self, settings: Settings, notes: list[str]) -> None:
        self.path = None if settings.chroma_url else Path(settings.store) / _SOURCES
        self.notes = notes
        self.data: dict[str, str] = {}
        self.changed = False
        if self.path is None:
            return
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            notes.append(f"could not read {self.path} ({exc}); where the stored transcripts came from is recorded afresh")
            return
        if isinstance(raw, dict):
            self.data = {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}

    def elsewhere(self, tid: str, path: Path) -> str:
        """The recorded source of ``tid`` when it is another file that still exists, else ''."""
        if self.path is None:
            return ""
        old = self.data.get(tid)
        if not old or old == os.path.abspath(path) or not os.path.exists(old):
            return ""
        return "" if _real(Path(old)) == _real(path) else old

    def record(self, tid: str, path: Path, *, adopt: bool = False) -> None:
        """``adopt``: only when nothing is recorded or the recorded file is gone (unchanged files)."""
        if self.path is None:
            return
        old = self.data.get(tid)
        if adopt and old and os.path.exists(old):
            return
        new = os.path.abspath(path)
        if old != new:
            self.data[tid] = new
            self.changed = True

    def forget(self, tid: str) -> None:
        if self.path is not None and self.data.pop(tid, None) is not None:
            self.changed = True

    def save(self) -> None:
        if self.path is None or not self.changed:
            return
        tmp = self.path.with_name(f".{_SOURCES}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.path)
            self.changed = False
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            self.notes.append(f"could not record where transcripts came from in {self.path} ({exc.strerror or exc})")


def ingest(
    paths: Iterable[str | Path],
    settings: Settings,
    *,
    prune: bool = False,
    embedder: Embedder | None = None,
    on_file: Callable[[FileResult], None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    wait_for_lock: bool = False,
    allow_empty: bool = False,
    replace_from_elsewhere: bool = False,
) -> IngestReport:
    """Ingest files and folders into the store. Never raises for a bad file: it is reported.

    ``prune`` removes stored transcripts not found among ``paths``, but not when a path is
    missing, when a folder given holds no transcript file, or when it would remove every stored
    transcript, unless ``allow_empty``. A file whose transcript id is already stored from another
    file that still exists is refused, unless ``replace_from_elsewhere``."""
    paths = list(paths)
    files, results, empty_folders = _discover(paths)
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
        sources = _Sources(settings, notes)
        todo: list[tuple[Transcript, list[Passage], str, FileResult, Path]] = []
        limit = int(settings.max_file_mb * 1024 * 1024)
        # content already stored, or read earlier in this run, under another id: a duplicate (the
        # same file uploaded under two names is indexed once)
        # (with --prune, only of one still among the files given: a file renamed in place is
        # its own transcript under the new name, not a duplicate of the one about to be pruned)
        listed = {t for _, t in files}
        by_hash = {info.hash: t for t, info in manifest.items() if not prune or t in listed}
        for i, (path, tid) in enumerate(files):
            if progress:
                progress("read", i, len(files))
            result = FileResult(_shown(str(path)), tid, "failed")
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
                    sources.record(tid, path, adopt=True)
                elif by_hash.get(digest, tid) != tid:
                    result.status = "duplicate"
                    result.reason = _shown(f"the same content as {by_hash[digest]}, already stored; not indexed twice")
                else:
                    other = sources.elsewhere(tid, path) if old is not None and not replace_from_elsewhere else ""
                    if other:
                        raise TranscriptError(
                            f"{tid}: a transcript with this id came from {_shown(other)}, which still exists; not replaced: "
                            "rename this file, or ingest the folder above both (ids then include their subfolders), "
                            "or pass --replace-from-elsewhere to replace it")
                    with _gc_paused():
                        transcript = parse_bytes(data, tid, path.suffix)
                    bad = _invalid_character(transcript)
                    if bad:
                        raise TranscriptError(f"{tid}: {bad}; fix the file (often a \\u escape in front matter or JSON)")
                    with _gc_paused():
                        passages = chunk_transcript(transcript, embedder.count_tokens, embedder.max_tokens)
                    if not passages:
                        raise TranscriptError(f"{tid}: nothing to index (only procedural turns)")
                    result.status = "updated" if old is not None else "added"
                    by_hash.setdefault(digest, tid)
                    result.passages, result.speakers = len(passages), len(transcript.speakers)
                    result.warnings = list(transcript.warnings)
                    todo.append((transcript, passages, digest, result, path))
            except TranscriptError as exc:
                result.reason = _shown(str(exc).removeprefix(f"{tid}: "))
            except OSError as exc:
                result.reason = _shown(f"cannot read: {exc.strerror or exc}")
            except RecursionError:
                result.reason = "too deeply nested to read"
            except Exception as exc:  # a bug must not stop the other files; say what it was
                result.reason = _shown(f"could not be read ({type(exc).__name__}: {exc})")
            results.append(result)
            if result.status in ("unchanged", "duplicate", "failed") and on_file:
                on_file(result)
        # Embed all new passages in one pass (the model batches by length), then write per file.
        texts = [p.embed_text for _, ps, *_ in todo for p in ps]
        done = 0

        def tick(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress("embed", done, len(texts))

        # nothing new (every file unchanged or failed): do not even load the model
        new = [p for _, ps, *_ in todo for p in ps]
        pooled = _derived.encode_pooled(new, embedder, settings.batch_size, tick) if texts and settings.sentence_vectors == "pooled" else None
        if pooled is not None:  # passage and sentence vectors from one forward pass
            vectors, sentences = pooled
        else:
            vectors = embedder.encode(texts, batch_size=settings.batch_size, progress=tick) if texts else None
            sentences = _ingest_sentences(embedder, settings, new, progress)
        # written in groups of files: Chroma's cost per write call is high (see Store.write_transcripts)
        groups: list[list[tuple[Transcript, list[Passage], str, FileResult, Path]]] = [[]]
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
            item_sentences = []
            for transcript, passages, digest, *_ in group:
                items.append((transcript, passages, vectors[at : at + len(passages)], digest))
                item_sentences.append(sentences[at : at + len(passages)])
                at += len(passages)
            if not items:
                continue
            _write_isolated(store, items, group, notes, item_sentences)
            for transcript, *_, result, path in group:
                if result.status != "failed":
                    sources.record(transcript.id, path)
            sources.save()
            if on_file:
                for *_, result, _ in group:
                    on_file(result)
        if prune and discovery_failed:
            notes.append("--prune skipped: some of the given paths could not be found or listed")
        elif prune:
            present = {tid for _, tid in files}
            gone = sorted(set(manifest) - present)
            why = ""
            if empty_folders:
                why = f"no transcript file was found in {', '.join(empty_folders)} (a missing or unmounted folder looks empty)"
            elif manifest and len(gone) == len(manifest):
                why = f"it would remove all {len(gone)} transcripts in the store"
            if gone and why and not allow_empty:
                r = FileResult(", ".join(_shown(str(p)) for p in paths), "", "failed",
                               reason=f"--prune refused: {why}; nothing was removed. Check the paths, or pass "
                                      f"--allow-empty to remove the {len(gone)} transcript(s) not found")
                results.append(r)
                if on_file:
                    on_file(r)
            else:
                for tid in gone:
                    store.remove_transcript(tid)
                    sources.forget(tid)
                    r = FileResult(tid, tid, "removed")
                    results.append(r)
                    if on_file:
                        on_file(r)
        sources.save()
        dropped = store.drop_older_versions()
        notes += [note for _, note in dropped]
        _snapshot.forget_collections(settings, [c for c, _ in dropped if c])
        writing.close()  # every write is done: a kill from here on leaves nothing to recover
        _write_snapshot(store, settings, notes)
        store.mark_index_checked()  # the next ingest of an unchanged store skips the health check
    return IngestReport(results, notes)


def _write_snapshot(store: Store, settings: Settings, notes: list[str]) -> None:
    """The snapshot of what questions need (rag/_snapshot.py) for the store as this ingest left
    it, so that no process that opens the store builds it. Nothing to do when it is there (an
    unchanged corpus); written from the previous snapshot by what changed when there is one
    (``_snapshot.update``: only the added and changed transcripts are read and tokenized), built
    from the store's records otherwise (docs/BENCHMARKS.md section 9 gives the costs)."""
    if not settings.snapshot:
        return
    from ._engine import load_view

    fingerprint = store.fingerprint()
    if _snapshot.ready(settings, collection_names(settings.model)[0], fingerprint):
        return
    try:
        load_view(store, settings, fingerprint)
    except StoreUnavailableError:
        raise
    except Exception as exc:  # the passages are stored: the first process that opens the store builds it instead
        notes.append(f"the query snapshot was not written ({type(exc).__name__}: {exc}); the first process "
                     "that opens the store builds it")


def _ingest_sentences(embedder: Embedder, settings: Settings, passages: list[Passage],
                      progress: Callable[[str, int, int], None] | None) -> list:
    """The new passages' sentence vectors, stored with them (``rag._derived``)."""
    if not passages:
        return []
    done = 0

    def encode(texts: list[str]):
        def tick(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress("sentences", done, len(texts))

        return embedder.encode(texts, batch_size=settings.batch_size, progress=tick)

    return _derived.encode_sentences(passages, encode)


def _write_isolated(store: Store, items: list, group: list, notes: list[str], sentences: list | None = None) -> None:
    """Write a group of transcripts in one call; when that fails, write them one by one, so that
    one file the store cannot take fails alone (its result says why) and the others go in. A
    failed file leaves nothing behind: passages its write put in are deleted again."""
    try:
        if sentences is not None:
            store.write_sentences(items, sentences)
        store.write_transcripts(items)
        return
    except StoreError:
        raise  # the store itself fails (unreachable, full, damaged, read-only): so would every other write
    except BaseException as exc:  # a Rust panic in Chroma is a BaseException
        if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        first = exc
    for n, (item, (*_, result, _path)) in enumerate(zip(items, group)):
        if len(items) == 1:
            exc = first
        else:
            try:
                if sentences is not None:
                    store.write_sentences([item], [sentences[n]])
                store.write_transcripts([item])
                continue
            except StoreError:
                raise
            except BaseException as e:
                if isinstance(e, (KeyboardInterrupt, SystemExit, GeneratorExit)):
                    raise
                exc = e
        transcript, _, _, digest = item
        if _undo(store, transcript.id, digest[:16], notes):
            continue  # the switch to the new version was made: only the clean-up after it failed
        result.status, result.passages, result.speakers, result.warnings = "failed", 0, 0, []
        result.reason = _shown(f"could not be stored ({type(exc).__name__}: {exc}); its previous version, if any, is kept")


def _undo(store: Store, tid: str, version: str, notes: list[str]) -> bool:
    """After a failed write of ``tid`` at ``version``: delete the passages that write may have put
    in, keeping the version the manifest points at. True when the manifest already points at
    ``version`` (the write went through; only its clean-up failed, which is done here)."""
    try:
        current = store.manifest().get(tid)
        if current is not None and current.version == version:
            store.drop_stale(tid, version)
            return True
        if current is None:
            store.remove_transcript(tid)  # nothing stored before: every passage of the id goes
        else:
            store.drop_stale(tid, current.version)
    except StoreError:
        raise
    except Exception:
        notes.append(f"passages of {_shown(tid)} left by a failed write will be removed by the next ingest")
    return False
