"""Chroma behind a narrow adapter: passages and a manifest of transcripts, embedded or server.

Two collections, both named after the embedding model and the chunker version, so a new model
or chunker builds a new index instead of mixing chunks:

* ``p_<model>_c<N>``: one record per passage, id ``<chunk_id>@<version>``; a question is stored
  on one passage of its transcript, the others refer to it (``_passage_metas``).
* ``m_<model>_c<N>``: one record per transcript (its content hash, version, metadata and the
  decoded source text, for showing and highlighting it).

A transcript's passages are written before its manifest record points at their version, and the
old version is deleted after, so a crash at any moment leaves either the old or the new version
whole: readers only see passages whose version is the one in the manifest.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import urlparse

import numpy as np

from . import _derived
from ._errors import IngestLockedError, StoreError, StoreMissingError, StoreUnavailableError
from ._records import Passage, Segment, Speaker, Transcript
from ._settings import CHUNKER_VERSION, Settings

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

_SEPS = {"\n": 0, " ": 1, "": 2}
_SEP_OF = {v: k for k, v in _SEPS.items()}
_BATCH = 1000
_PAGE = 1000  # records per read: SQLite takes at most 32,766 variables, and Chroma binds one per record
HTTP_TIMEOUT = 60.0  # seconds a Chroma server may take to answer one request (server mode)
HTTP_CONNECT_TIMEOUT = 10.0
_P_CONFIG = {"hnsw": {"space": "cosine"}}
_REBUILD = "_rebuild"  # suffix of a collection's copy while it is rebuilt
_UNFINISHED = "ingest.unfinished"  # present while an ingest writes (embedded stores)
_GEN = "_gen"  # suffix of the manifest's name for the collection whose metadata is the store's generation
_CACHE = "manifest.cache"  # the manifest as of one generation, in the store folder (embedded stores)
_CACHE_FORMAT = 1
_WRITER_SILENT = 600.0  # seconds after which an open generation of another host's writer counts as abandoned
_HEALTH_TIMEOUT = 600.0  # seconds the child checking the vector index may take (it loads the index)
# The vector index check, run in a child process (Store._index_health): exit 0 when the index
# answers a count and a one-result search, 1 when Chroma raises, killed by a signal when
# Chroma's native code crashes.
_HEALTH_CHILD = """
import sys
import chromadb
from chromadb.config import Settings
client = chromadb.PersistentClient(path=sys.argv[1], settings=Settings(anonymized_telemetry=False, allow_reset=False))
passages = client.get_collection(sys.argv[2], embedding_function=None)
client.get_collection(sys.argv[3], embedding_function=None).count()
if passages.count():
    got = passages.get(limit=1, include=["embeddings"])
    dim = len(got["embeddings"][0]) if got["ids"] else 1
    passages.query(query_embeddings=[[0.0] * dim], n_results=1, include=[])
"""
_QREF = "question_ref"  # set on a passage whose question is stored on another one (_passage_metas)
# The vector index files (and Chroma's SQLite file) as the last health check, or the last ingest
# that finished, left them: size and modification time of each. While they match, the index has not
# changed since it was known to answer, and the next ingest skips the health check's child process.
_CHECKED = "index.checked"
_SCANNED = "index.scanned"  # the vector index folders whose files last passed _hnsw_problem, by signature


@dataclass
class TranscriptInfo:
    id: str
    hash: str
    version: str
    title: str
    date: str
    source: str
    format: str
    speakers: list[Speaker]
    counts: dict[str, int]  # passages by kind
    units: dict[str, int]  # answers, comments, ... by kind (parts of one answer count once)
    warnings: list[str] = field(default_factory=list)
    ingested_at: float = 0.0

    @property
    def n_passages(self) -> int:
        return sum(self.counts.values())


def collection_names(model: str) -> tuple[str, str]:
    base = Path(model).name if ("/" in model or os.sep in model) else model
    slug = re.sub(r"[^a-z0-9]+", "-", base.lower()).strip("-")[:40] or "model"
    if model not in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        slug += "-" + hashlib.sha1(model.encode()).hexdigest()[:6]
    return f"p_{slug}_c{CHUNKER_VERSION}", f"m_{slug}_c{CHUNKER_VERSION}"


def _version_of(name: str, model: str) -> int | None:
    """The chunker version of one of this model's collections (``p_<model>_c<N>``, ``m_...``,
    ``s_...``), or None for any other collection (another model's, a rebuild's copy)."""
    p_name, _ = collection_names(model)
    stem = p_name[1:].rsplit("_c", 1)[0]  # "_<model>"
    m = re.fullmatch(rf"[pms]{re.escape(stem)}_c(\d+)", name)
    return int(m.group(1)) if m else None


def _unavailable(settings: Settings, exc: Exception) -> StoreUnavailableError:
    text = f"{type(exc).__name__} {exc}".lower()
    if "timeout" in text or "timed out" in text:
        return StoreUnavailableError(
            f"cannot reach the Chroma server at {settings.chroma_url}: it accepted the connection but did not "
            f"answer within {settings.chroma_timeout:g} s ({type(exc).__name__})",
            "Check that the server at RAG_CHROMA_URL is a running `chroma run` and not stuck or overloaded "
            "(restart it if so); the app reconnects by itself once it answers.")
    return StoreUnavailableError(f"cannot reach the Chroma server at {settings.chroma_url} ({type(exc).__name__}: {_short(exc)})")


def _short(exc: BaseException, limit: int = 200) -> str:
    """The first line of an error's message, cut to ``limit`` characters (a proxy's HTML page is not shown)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _DiskFull(StoreUnavailableError):
    """No space left: the store cannot take writes now (a StoreUnavailableError, so that an ingest
    stops at once instead of failing every remaining file the same way)."""

    help_message = ("Free space on that disk (or move the store with --store / RAG_STORE) and run the same command "
                    "again: what was stored before is unchanged and can still be read.")


class _DatabaseDamaged(StoreError):
    help_message = ("Restore the store folder from a backup, or move it aside and run `rag ingest` on your transcripts "
                    "to build a new one. Nothing in the folder was changed or deleted.")


class _IndexDamaged(StoreError):
    help_message = ("Run `rag ingest` (on any folder, e.g. the same transcripts again): it rebuilds the vector index "
                    "from the stored passages. Nothing was changed or deleted.")


class _Replaced(StoreError):
    """A collection was replaced under this reader (a rebuild finished by the ingest lock's holder)."""

    help_message = "Run the command again."


_NO_SPACE = ("no space left on device", "database or disk is full", "disk full", "not enough space")
_DB_DAMAGED = ("database disk image is malformed", "file is not a database", "malformed database schema")
_INDEX_DAMAGED = ("hnsw", "error finding id", "error getting embedding", "error loading index")


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return True
    return any(w in str(exc).lower() for w in _NO_SPACE)


def _is_not_found(exc: BaseException) -> bool:
    try:
        from chromadb.errors import NotFoundError
    except ImportError:  # another chromadb layout
        NotFoundError = ()  # type: ignore[assignment]
    return isinstance(exc, NotFoundError) or (type(exc).__name__ == "NotFoundError")


def writable(folder: Path) -> bool:
    """Can this process write the store folder and its database (a read-only mount, or another
    user's folder, cannot)?"""
    db = folder / "chroma.sqlite3"
    return os.access(folder, os.W_OK) and (not db.exists() or os.access(db, os.W_OK))


class Store:
    def __init__(self, settings: Settings, create: bool = False, timeout: float | None = None) -> None:
        """``timeout``: seconds a Chroma server may take per request (server mode; default
        ``HTTP_TIMEOUT``): a server that accepts connections and never answers is reported then."""
        self.settings = settings
        self.create = create
        self.timeout = timeout if timeout is not None else settings.chroma_timeout
        self._client = None
        self._passages = None
        self._manifest = None
        self._sentences = None  # stored sentence vectors (rag/_derived.py); None: this store has none
        self._gen = None  # the collection holding the generation (None: a store written before generations)
        self._lock_held = False  # this Store holds the ingest lock (and may finish rebuilds)
        self._stale = False  # the server lost our collections: look them up again before the next call
        self._connect()

    # ------------------------------------------------------------------ connection

    read_only_copy: Path | None = None  # where a read-only store is read from (see _working_copy)

    def _working_copy(self) -> Path:
        """A read-only store is read from a private copy. Embedded Chroma opens its database for
        writing even to read (chromadb 1.5 has no read-only client: docs/RELIABILITY.md), so the
        folder is copied to a temporary one, once per Store, removed when the process ends; the
        original is never written (its query snapshots, rag/_snapshot.py, are read where they are,
        not copied). Refused, with the reason, when the copy would not fit."""
        import atexit
        import shutil
        import tempfile

        if self.read_only_copy is not None:
            return self.read_only_copy
        size = sum(f.stat().st_size for f in self.settings.store.rglob("*") if f.is_file())
        tmp = Path(tempfile.gettempdir())
        free = shutil.disk_usage(tmp).free
        if size * 1.1 + 50_000_000 > free:
            raise StoreError(f"the store folder {self.settings.store} is read-only, and a copy to read it from "
                             f"({size / 1e6:,.0f} MB) does not fit in {tmp} ({free / 1e6:,.0f} MB free)",
                             "Make the folder writable for this user, or set TMPDIR to a folder with room for the copy.")
        copy = Path(tempfile.mkdtemp(prefix="rag-read-only-"))
        atexit.register(shutil.rmtree, copy, True)
        shutil.copytree(self.settings.store, copy / "store", ignore=shutil.ignore_patterns("ingest.lock", "conversations", "snapshots"))
        for f in [copy / "store", *(copy / "store").rglob("*")]:  # the copy is ours to open for writing
            f.chmod(f.stat().st_mode | (0o700 if f.is_dir() else 0o600))
        self.read_only_copy = copy / "store"
        return self.read_only_copy

    def _connect(self) -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
        s = self.settings
        self._stale = False
        try:
            if s.chroma_url:
                url = urlparse(s.chroma_url)
                host = url.hostname or "127.0.0.1"
                port = url.port or (443 if url.scheme == "https" else 8000)
                self._preflight(f"{'https' if url.scheme == 'https' else 'http'}://{host}:{port}")
                self._client = chromadb.HttpClient(host=host, port=port, ssl=url.scheme == "https", settings=chroma_settings)
                self._set_http_timeout()
            else:
                if not self.create and not (s.store / "chroma.sqlite3").exists():
                    raise StoreMissingError(f"no index at {s.store}/")
                try:
                    s.store.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    if _is_disk_full(exc):
                        raise self._error(exc) from None
                    raise
                path = s.store
                if not self.create and not writable(s.store):
                    path = self._working_copy()
                if not self.create:  # before Chroma loads them (an ingest's recovery checks and rebuilds them)
                    self._check_index_files()
                self._client = chromadb.PersistentClient(path=str(path), settings=chroma_settings)
            self._open_collections()
        except StoreError:
            raise
        except Exception as exc:
            mapped = self._error(exc)
            if mapped is not None:
                raise mapped from None
            if s.chroma_url:  # whatever answered there, it did not answer as a Chroma server does
                raise StoreUnavailableError(
                    f"the Chroma server at {s.chroma_url} did not answer as expected ({type(exc).__name__}: {_short(exc)})",
                    "Check that RAG_CHROMA_URL / --chroma-url points at a running `chroma run` of a matching version.",
                ) from None
            raise

    def _open_collections(self) -> None:
        """Open (or, for an ingest, create) the two collections. Rebuilds a killed ingest left
        (``<name>_rebuild``) are finished or discarded only by a holder of the ingest lock (an
        embedded store tries the lock without waiting); anyone else reads the live collections, or
        a complete copy whose original was already dropped."""
        p_name, m_name = collection_names(self.settings.model)
        s_name = _derived.collection_name(p_name)
        if not self.settings.chroma_url:
            if self._lock_held:
                self._finish_rebuilds((p_name, m_name, s_name))
            else:
                with self._try_ingest_lock() as locked:
                    if locked:
                        self._finish_rebuilds((p_name, m_name, s_name))
        existing = self._collection_names()

        def live(name: str) -> str | None:
            if name in existing:
                return name
            if name + _REBUILD in existing:  # the original is gone, its complete copy not yet renamed
                return name + _REBUILD
            return None

        p_live, m_live, s_live = live(p_name), live(m_name), live(s_name)
        self._sentences = None
        if self.create:
            self._sentences = (self._client.get_collection(s_live, embedding_function=None) if s_live
                               else self._client.get_or_create_collection(s_name, embedding_function=None))
            self._passages = (self._client.get_collection(p_live, embedding_function=None) if p_live
                              else self._client.get_or_create_collection(p_name, embedding_function=None, configuration=_P_CONFIG))
            self._manifest = (self._client.get_collection(m_live, embedding_function=None) if m_live
                              else self._client.get_or_create_collection(m_name, embedding_function=None))
            self._gen = self._generation_collection(create=True, existing=existing)
            return
        try:
            if not p_live or not m_live:
                raise LookupError
            self._passages = self._client.get_collection(p_live, embedding_function=None)
            self._manifest = self._client.get_collection(m_live, embedding_function=None)
            if s_live:
                self._sentences = self._client.get_collection(s_live, embedding_function=None)
            self._gen = self._generation_collection(create=False, existing=existing)
        except Exception as exc:  # chromadb raises NotFoundError / ValueError by version
            if _is_connection_error(exc):
                raise
            older = self.older_versions()
            if older:
                n = sum(older.values())
                raise StoreMissingError(
                    f"{self.settings.describe_store()} holds {n} transcript(s) read by an earlier version of rag "
                    f"(chunker version {', '.join(map(str, sorted(older)))}; this one reads transcripts as version "
                    f"{CHUNKER_VERSION})",
                    "Run `rag ingest` on your transcript folders again to read them with this version; the earlier "
                    "copy is removed once every transcript in it is in.",
                ) from None
            raise StoreMissingError(
                f"no index for model {self.settings.model} in {self.settings.describe_store()}"
            ) from None

    def older_versions(self) -> dict[int, int]:
        """Chunker versions other than this one that hold this model's transcripts (a store
        written before an upgrade), with their transcript counts."""
        out = {}
        for name in self._collection_names():
            v = _version_of(name, self.settings.model)
            if v is not None and v != CHUNKER_VERSION and name.startswith("m"):
                out[v] = self._client.get_collection(name, embedding_function=None).count()
        return out

    def earlier_copies(self) -> dict[int, tuple[int, int]]:
        """Per other chunker version holding this model's transcripts: (transcripts it holds, how
        many of them this version does not hold yet)."""
        current = set(self.manifest())
        out = {}
        _, m_name = collection_names(self.settings.model)
        for v in sorted(self.older_versions()):
            old_m = self._client.get_collection(m_name.rsplit("_c", 1)[0] + f"_c{v}", embedding_function=None)
            ids = {i for got in self._pages(old_m, []) for i in got["ids"]}
            out[v] = (len(ids), len(ids - current))
        return out

    def drop_older_versions(self) -> list[tuple[str, str]]:
        """Under the ingest lock: remove the collections of other chunker versions of this model
        whose every transcript is now stored in this version (their passages are never read
        again); an earlier version still holding a transcript this one lacks is kept, and said.
        Returns (passages collection removed, or "" when kept; note for the ingest report)."""
        notes: list[tuple[str, str]] = []
        p_name, _ = collection_names(self.settings.model)
        names = self._collection_names()
        for v, (n, missing) in self.earlier_copies().items():
            if missing:
                notes.append(("", f"{missing} of the {n} transcript(s) stored by chunker version {v} are not yet read "
                                  f"by this version ({CHUNKER_VERSION}): ingest their folders again to search them (the "
                                  "earlier copy is kept until then)"))
                continue
            with self._guard():
                for name in sorted(names):
                    if _version_of(name, self.settings.model) == v:
                        self._client.delete_collection(name)
            notes.append((p_name.rsplit("_c", 1)[0] + f"_c{v}",
                          f"removed the earlier copy of {n} transcript(s) stored by chunker version {v}: "
                          f"all are stored by this version ({CHUNKER_VERSION})"))
        return notes

    @contextlib.contextmanager
    def _try_ingest_lock(self) -> Iterator[bool]:
        """The embedded ingest lock, if nobody holds it: yields whether it was taken."""
        import fcntl

        path = self.settings.store / "ingest.lock"
        try:
            fh = open(path, "a+")
        except OSError:  # a read-only folder: this process cannot be the writer
            yield False
            return
        with fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _preflight(self, base: str) -> None:
        """One heartbeat with a deadline before Chroma's client is made (which asks the server
        several things with no deadline): a server that never answers, or something that is not
        a Chroma server on that port, is reported here instead of hanging or failing deep inside."""
        import httpx

        url = self.settings.chroma_url
        try:
            r = httpx.get(f"{base}/api/v2/heartbeat", timeout=self._http_timeout())
        except httpx.HTTPError as exc:
            raise _unavailable(self.settings, exc) from None
        try:
            ok = r.status_code == 200 and "nanosecond heartbeat" in r.json()
        except ValueError:
            ok = False
        if not ok:
            kind = r.headers.get("server") or r.headers.get("content-type") or "unknown"
            raise StoreUnavailableError(
                f"the server at {url} is not a Chroma server: /api/v2/heartbeat answered HTTP {r.status_code} ({_short(kind, 80)})",
                "Check RAG_CHROMA_URL / --chroma-url: it must point at `chroma run` (Chroma 1.x, whose API is /api/v2), "
                "not at another web server on that port.",
            )

    def _http_timeout(self):
        import httpx

        read = self.timeout if self.timeout is not None else HTTP_TIMEOUT
        return httpx.Timeout(read, connect=min(read, HTTP_CONNECT_TIMEOUT))

    def _set_http_timeout(self) -> None:
        """Chroma's HTTP client waits for ever (httpx timeout=None, no setting for it): give its
        session our deadline, so that a server that stops answering is reported, not waited for."""
        session = getattr(getattr(self._client, "_server", None), "_session", None)
        if session is not None:
            session.timeout = self._http_timeout()

    def _error(self, exc: BaseException) -> StoreError | None:
        """What a failure of Chroma means for the user, as one of our errors (None: not known)."""
        s = self.settings
        if isinstance(exc, StoreError):
            return exc
        if s.chroma_url and _is_connection_error(exc):
            return _unavailable(s, exc)
        if _is_disk_full(exc):
            where = f"the Chroma server at {s.chroma_url}" if s.chroma_url else f"the disk holding {s.store}/"
            return _DiskFull(f"no space left on {where} ({type(exc).__name__}: {_short(exc)})")
        if s.chroma_url:
            if _is_not_found(exc):
                self._stale = True
                return StoreUnavailableError(
                    f"the Chroma server at {s.chroma_url} no longer has this store's collections "
                    f"(it was restarted with another --path, or they were deleted): {_short(exc)}",
                    "Restart the server with the --path that holds the store, or run `rag ingest` to build the store "
                    "there; the app picks it up by itself.",
                )
            return None
        text = str(exc).lower()
        if any(w in text for w in _DB_DAMAGED):
            return _DatabaseDamaged(f"the store's database {s.store / 'chroma.sqlite3'} is damaged ({_short(exc)})")
        if any(w in text for w in _INDEX_DAMAGED):
            if (s.store / _UNFINISHED).exists():
                return _IndexDamaged(
                    f"the vector index in {s.store}/ did not answer ({_short(exc)}); an ingest is writing to it, or was killed",
                    "Ask again when the ingest is done; if none is running, run `rag ingest` to rebuild the index.")
            return _IndexDamaged(f"the vector index files in {s.store}/ are damaged or missing ({_short(exc)})")
        if _is_not_found(exc):
            return _Replaced(f"the store in {s.store}/ was rebuilt while it was read ({_short(exc)})")
        return None

    def reopen(self) -> None:
        """See what other processes wrote. An embedded Chroma client keeps its vector index in
        memory and does not notice another process's writes (its metadata reads do): drop this
        path's shared client state and connect again."""
        if not self.settings.chroma_url:
            try:
                from chromadb.api.shared_system_client import SharedSystemClient

                ident = self._client.get_settings().persist_directory
                SharedSystemClient._identifier_to_system.pop(ident, None)
                SharedSystemClient._identifier_to_refcount.pop(ident, None)
            except (ImportError, AttributeError):  # another chromadb layout: start afresh
                from chromadb.api.shared_system_client import SharedSystemClient

                SharedSystemClient.clear_system_cache()
        self._connect()

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn Chroma's failures into our errors (StoreUnavailableError for a server that cannot
        be reached, does not answer or lost the collections; a full disk; damaged files)."""
        if self._stale:  # the server lost our collections at the last call: look them up again
            self._connect()
        try:
            yield
        except Exception as exc:
            mapped = self._error(exc)
            if mapped is not None and mapped is not exc:
                raise mapped from None
            raise

    def _read(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` under ``_guard``; when the collections were replaced meanwhile (an ingest lock
        holder finished a rebuild), once more on the new ones."""
        try:
            with self._guard():
                return fn()
        except _Replaced:
            self.reopen()
            with self._guard():
                return fn()

    def _pages(self, collection: Any, include: list[str], where: dict | None = None) -> Iterator[dict]:
        """``collection.get`` in pages of ``_PAGE`` records: one unbounded read binds a SQL
        variable per record and fails from 32,767 records on ("too many SQL variables")."""
        offset = 0
        while True:
            got = collection.get(where=where, include=include, limit=_PAGE, offset=offset)
            if not got["ids"]:
                return
            yield got
            if len(got["ids"]) < _PAGE:
                return
            offset += len(got["ids"])

    def _records(self, collection: Any, include: list[str]) -> dict[str, list]:
        """Every record of a collection (paged), as one ``get`` answer."""
        out: dict[str, list] = {"ids": [], **{k: [] for k in include}}
        for got in self._pages(collection, include):
            out["ids"] += got["ids"]
            for k in include:
                out[k] += list(got[k])
        return out

    # ------------------------------------------------------------------ manifest

    def manifest(self) -> dict[str, TranscriptInfo]:
        """Every transcript's record. Read from Chroma (in pages), or, in an embedded store, from
        the copy the last such read saved for the current generation (``manifest.cache``): reading
        100,000 records from Chroma takes seconds, the copy a fraction of it."""
        state = self._generation()
        rows = self._cached_rows(state)
        if rows is None:
            got = self._read(lambda: self._records(self._manifest, ["metadatas"]))
            rows = [_row(tid, md) for tid, md in zip(got["ids"], got["metadatas"])]
            del got
            if state is not None and not state["open"] and self._generation() == state:
                self._save_rows(state, rows)  # no change began or ended during the read
        return {row[0]: _info_of(row) for row in rows}

    def fingerprint(self) -> str:
        """Changes whenever any transcript is added, changed or removed (by any process), and not
        otherwise: the store's generation, which every write of the manifest moves (``_changing``).
        One small read, whatever the number of transcripts. A store written before generations
        existed (until its next ingest) gets a digest of the whole manifest instead."""
        state = self._generation()
        if state is None:
            got = self._read(lambda: self._records(self._manifest, ["metadatas"]))
            pairs = sorted((tid, md.get("version", "")) for tid, md in zip(got["ids"], got["metadatas"]))
            return hashlib.sha1(json.dumps(pairs).encode()).hexdigest()
        fp = f"g{state['n']}-{state['token']}"
        if state["open"] and not _writer_alive(state.get("owner", ""), state.get("at", 0.0)):
            # its writer died inside a change: what it wrote may postdate a view made while it lived
            fp += "-abandoned"
        return fp

    # ------------------------------------------------------------------ generation

    def _generation_collection(self, create: bool, existing: set[str] | None = None) -> Any:
        """The collection whose metadata is the store's generation (it holds no records, so no
        vector index: reading it is one look-up). None when absent and not ``create``."""
        name = collection_names(self.settings.model)[1] + _GEN
        if existing is None:
            existing = self._collection_names()
        if name in existing:
            return self._client.get_collection(name, embedding_function=None)
        if not create:
            return None
        try:
            return self._client.create_collection(name, embedding_function=None, metadata=_gen_meta(0, False))
        except Exception as exc:  # another ingest made it meanwhile (a Store(create=True) opens before the lock)
            if _is_connection_error(exc):
                raise
            return self._client.get_collection(name, embedding_function=None)

    def _generation(self) -> dict[str, Any] | None:
        """The generation now: ``{"n", "token", "open", "owner", "at"}``, or None for a store
        written before generations (looked for again on each call, so that a reader notices the
        first ingest that adds them)."""
        def read() -> dict[str, Any] | None:
            if self._gen is None:
                self._gen = self._generation_collection(create=False)
                if self._gen is None:
                    return None
            md = self._client.get_collection(self._gen.name, embedding_function=None).metadata or {}
            if not isinstance(md.get("n"), int) or not md.get("token"):
                return None
            return {"n": md["n"], "token": md["token"], "open": bool(md.get("open")),
                    "owner": md.get("owner", ""), "at": float(md.get("at", 0.0))}

        try:
            return self._read(read)
        except StoreError:
            raise
        except Exception as exc:
            if _is_not_found(exc):  # deleted under us: as if absent
                self._gen = None
                return None
            raise

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """Bracket a change of the manifest: the generation moves to a new, open one before it and
        to a new, closed one after it, so a reader that read the generation before the manifest
        (``Engine.index``) sees a new one after any change. A writer killed inside leaves it open:
        readers then see it as abandoned once that process is gone (``fingerprint``), and the
        next ingest's recovery closes it."""
        with self._guard():
            if self._gen is None:
                self._gen = self._generation_collection(create=True)
            state = self._generation() or {"n": 0}
            n = state["n"] + 1
            self._gen.modify(metadata=_gen_meta(n, True))
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):  # the change's own error is the one to report
                self._gen.modify(metadata=_gen_meta(n + 1, False))
            raise
        with self._guard():
            self._gen.modify(metadata=_gen_meta(n + 1, False))

    def _cache_file(self) -> Path | None:
        if self.settings.chroma_url:
            return None
        return (self.read_only_copy or self.settings.store) / _CACHE

    def _cached_rows(self, state: dict[str, Any] | None) -> list[list] | None:
        """The saved manifest rows if they are of generation ``state`` (closed), else None."""
        path = self._cache_file()
        if path is None or state is None or state["open"]:
            return None
        try:
            with open(path, encoding="utf-8") as fh:
                head = json.loads(fh.readline())
                if (head.get("format") != _CACHE_FORMAT or head.get("token") != state["token"]
                        or head.get("collection") != self._manifest.name):
                    return None
                rows = json.loads(fh.read())
        except (OSError, ValueError, AttributeError):
            return None
        return rows if isinstance(rows, list) and len(rows) == head.get("records") else None

    def _save_rows(self, state: dict[str, Any], rows: list[list]) -> None:
        """Save the manifest rows read at generation ``state`` for the next reader (written to a
        temporary file, then renamed: a reader sees a whole file or the old one). Skipped when the
        folder cannot take it (read-only, full): the cache only saves time."""
        path = self._cache_file()
        if path is None or self.read_only_copy is not None:
            return
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        head = {"format": _CACHE_FORMAT, "token": state["token"], "collection": self._manifest.name, "records": len(rows)}
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(head) + "\n")
                json.dump(rows, fh, ensure_ascii=False, separators=(",", ":"))
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)

    def source_text(self, transcript: str) -> str:
        got = self._read(lambda: self._manifest.get(ids=[transcript], include=["documents"]))
        if not got["ids"]:
            raise KeyError(transcript)
        return got["documents"][0] or ""

    # ------------------------------------------------------------------ writing

    def write_transcript(
        self, t: Transcript, passages: list[Passage], vectors: np.ndarray, file_hash: str
    ) -> None:
        self.write_transcripts([(t, passages, vectors, file_hash)])

    def write_transcripts(self, items: Sequence[tuple[Transcript, list[Passage], np.ndarray, str]]) -> None:
        """Write transcripts' passages, then switch each transcript's manifest record to the new
        version, then drop its older passages. Several transcripts go in one call: Chroma's cost
        per upsert call is high (5,453 passages took 6.7 s in calls of 130 and 4.0 s in calls of
        1,000; 42 manifest records 1.41 s one by one and 0.45 s in one call). A crash part-way
        leaves passages of versions no manifest record points at, which ``repair`` removes."""
        if not items:
            return
        ids: list[str] = []
        vecs: list[np.ndarray] = []
        docs: list[str] = []
        metas: list[dict[str, Any]] = []
        for t, passages, vectors, file_hash in items:
            version = file_hash[:16]
            ids += [f"{p.chunk_id}@{version}" for p in passages]
            vecs.append(np.asarray(vectors, dtype=np.float32).reshape(len(passages), -1))
            docs += [p.text for p in passages]
            metas += _passage_metas(passages, version)
        with self._guard():
            if ids:
                matrix = np.concatenate(vecs)
                for i in range(0, len(ids), _BATCH):
                    sl = slice(i, i + _BATCH)
                    self._passages.upsert(ids=ids[sl], embeddings=matrix[sl], documents=docs[sl], metadatas=metas[sl])
            # the switch to the new versions: one record per transcript, in one write
            with self._changing():
                self._manifest.upsert(
                    ids=[t.id for t, *_ in items],
                    embeddings=[[1.0]] * len(items),
                    documents=[t.text for t, *_ in items],
                    metadatas=[_manifest_meta(t, passages, file_hash) for t, passages, _, file_hash in items],
                )
            for t, _, _, file_hash in items:
                self.drop_stale(t.id, file_hash[:16])

    def write_sentences(self, items: Sequence[tuple[Transcript, list[Passage], Any, str]],
                        sentences: Sequence[Sequence[np.ndarray]]) -> None:
        """Store the sentence vectors (``rag._derived``; per item, per passage) of transcript
        versions about to be written with ``write_transcripts``: before it, so that the manifest's
        switch to a version finds them there; until then no reader asks for them, and records of
        versions the manifest never names are dropped like such passages (``drop_stale``,
        ``repair``)."""
        if self._sentences is None:
            return
        flat = [(p, file_hash[:16]) for (_, passages, _, file_hash) in items for p in passages]
        if not flat:
            return
        with self._guard():
            _derived.write(self._sentences, [f"{p.chunk_id}@{v}" for p, v in flat], [p for p, _ in flat],
                           [v for _, v in flat], [m for per in sentences for m in per])

    def drop_stale(self, transcript: str, version: str) -> None:
        with self._guard():
            self._passages.delete(where={"$and": [{"transcript": transcript}, {"version": {"$ne": version}}]})
            if self._sentences is not None:
                self._sentences.delete(where={"$and": [{"transcript": transcript}, {"version": {"$ne": version}}]})

    def repair(self, manifest: dict[str, TranscriptInfo]) -> int:
        """Delete passages an interrupted ingest or removal left behind (versions the manifest
        does not point at). Cheap when there is nothing to do: one count. Returns how many."""
        expected = sum(info.n_passages for info in manifest.values())
        self._repair_sentences(manifest, expected)
        before = self.count()
        if before == expected:
            return 0
        versions = {tid: info.version for tid, info in manifest.items()}
        with self._guard():
            # the difference is taken here, page by page: a filter naming every transcript
            # ($nin) binds one SQL variable per transcript and fails from 32,767 on
            stale = [cid for got in self._pages(self._passages, ["metadatas"])
                     for cid, md in zip(got["ids"], got["metadatas"])
                     if versions.get((md or {}).get("transcript")) != (md or {}).get("version")]
            for i in range(0, len(stale), _BATCH):  # deleted after reading: no page shifts under the reads
                self._passages.delete(ids=stale[i : i + _BATCH])
        return before - self.count()

    def _repair_sentences(self, manifest: dict[str, TranscriptInfo], expected: int) -> None:
        """``repair`` for the stored sentence vectors: one record per current passage."""
        if self._sentences is None:
            return
        with self._guard():
            if self._sentences.count() == expected:
                return
            versions = {tid: info.version for tid, info in manifest.items()}
            stale = [cid for got in self._pages(self._sentences, ["metadatas"])
                     for cid, md in zip(got["ids"], got["metadatas"])
                     if versions.get((md or {}).get("transcript")) != (md or {}).get("version")]
            for i in range(0, len(stale), _BATCH):
                self._sentences.delete(ids=stale[i : i + _BATCH])

    @property
    def has_sentences(self) -> bool:
        """The store keeps its passages' sentence vectors (written at ingest)."""
        return self._sentences is not None

    def sentence_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored sentence vectors (``rag._derived``) by passage id (``<chunk_id>@<version>``);
        ids without a record are left out."""
        if self._sentences is None or not ids:
            return {}
        return self._read(lambda: _derived.read(self._sentences, ids))

    # ------------------------------------------------------------------ crash recovery

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Mark the store as being written while the block runs. Embedded Chroma writes its
        vector index (HNSW files) in place, so a process killed mid-write can leave them torn:
        counting, searching or writing then fails, or even crashes the next process. The mark
        survives such a kill, and the next ingest rebuilds the index (``recover``)."""
        if self.settings.chroma_url:  # the server's files do not die with this process
            yield
            return
        mark = self.settings.store / _UNFINISHED
        try:
            mark.write_text(f"{os.getpid()}\n", encoding="utf-8")
        except OSError as exc:
            mark.unlink(missing_ok=True)
            if _is_disk_full(exc):
                raise self._error(exc) from None
            raise
        try:
            yield
        finally:
            mark.unlink(missing_ok=True)

    def recover(self, encode: Callable[[list[str]], np.ndarray]) -> list[str]:
        """After an ingest that did not finish (killed), or when the vector index does not
        answer: rebuild both collections from their records, which live in Chroma's SQLite file
        and survive a kill, re-embedding the passages with ``encode``; a transcript that lost
        passages is removed whole, for the next ingest of its file to add again. Returns notes."""
        if self.settings.chroma_url:
            return []
        unfinished = (self.settings.store / _UNFINISHED).exists()
        problem = self._index_files_problem()
        if not unfinished and not problem and self._index_unchanged_since_checked():
            return []
        health = "damaged" if problem else self._index_health()
        if not unfinished and health == "ok":
            self.mark_index_checked(verify=False)
            return []
        notes = ["the last ingest did not finish" if unfinished else "the vector index did not answer"]
        if health in ("crashed", "damaged"):
            # loading the index may crash Chroma, even to read the records: set its files aside first
            moved = self._set_aside_index_files()
            if moved is None:
                raise _IndexDamaged(f"cannot rebuild the vector index in {self.settings.store}/: loading it crashes "
                                    "Chroma, and its files could not be moved aside", _DatabaseDamaged.help_message)
            what = f"are damaged ({problem})" if problem else "crashed Chroma when loaded"
            notes.append(f"the vector index files {what}: moved to {moved[0]}")
        try:
            m_got, ids, docs, metas, texts = self._recovery_records()
        except _IndexDamaged as first:
            # the index files cannot even be loaded (an emptied header.bin): Chroma then cannot
            # read the records either. Move the files aside (kept, not deleted) and read again.
            moved = self._set_aside_index_files()
            if moved is None:
                raise _IndexDamaged(f"cannot rebuild the vector index in {self.settings.store}/: {first}",
                                    _DatabaseDamaged.help_message) from None
            try:
                m_got, ids, docs, metas, texts = self._recovery_records()
            except StoreError as exc:
                self._restore_index_files(moved)
                raise _IndexDamaged(f"cannot rebuild the vector index in {self.settings.store}/: {exc}",
                                    _DatabaseDamaged.help_message) from None
            notes.append(f"the vector index files could not be loaded: moved to {moved[0]}")
        except (_DatabaseDamaged, _Replaced) as exc:
            raise _DatabaseDamaged(f"cannot rebuild the vector index in {self.settings.store}/: {exc}") from None
        manifest = {tid: _info(tid, md) for tid, md in zip(m_got["ids"], m_got["metadatas"])}
        vectors = encode(texts) if texts else np.zeros((0, 1), dtype=np.float32)
        have: dict[str, int] = {}
        for md in metas:
            have[md["transcript"]] = have.get(md["transcript"], 0) + 1
        keep = {tid for tid, info in manifest.items() if have.get(tid, 0) == info.n_passages}
        for tid in sorted(set(manifest) - keep):
            notes.append(f"{tid} had lost passages: removed, ingest its file again")
        rows = [i for i, md in enumerate(metas) if md["transcript"] in keep]
        m_rows = [i for i, tid in enumerate(m_got["ids"]) if tid in keep or tid not in manifest]

        def fill_passages(col) -> None:
            for at in range(0, len(rows), _BATCH):
                sl = rows[at : at + _BATCH]
                col.add(ids=[ids[i] for i in sl], embeddings=vectors[sl], documents=[docs[i] for i in sl],
                        metadatas=[metas[i] for i in sl])

        def fill_manifest(col) -> None:
            # in batches too: Chroma refuses a write of more than 5,461 records
            for at in range(0, len(m_rows), _BATCH):
                sl = m_rows[at : at + _BATCH]
                col.add(ids=[m_got["ids"][i] for i in sl], embeddings=[[1.0]] * len(sl),
                        documents=[m_got["documents"][i] for i in sl], metadatas=[m_got["metadatas"][i] for i in sl])

        fill_sentences = self._recovery_sentences(ids, docs, metas, rows, encode, notes)
        with self._guard(), self._changing():
            self._passages = self._replace(self._passages, _P_CONFIG, fill_passages)
            self._manifest = self._replace(self._manifest, None, fill_manifest)
            if fill_sentences is not None:
                self._sentences = self._replace(self._sentences, None, fill_sentences)
        notes.append(f"rebuilt the vector index: {len(rows)} passages of {len(keep)} transcripts re-embedded")
        (self.settings.store / _UNFINISHED).unlink(missing_ok=True)
        return notes

    def _recovery_sentences(self, ids: list[str], docs: list[str], metas: list[dict], rows: list[int],
                            encode: Callable[[list[str]], np.ndarray], notes: list[str]) -> Callable[[Any], None] | None:
        """How ``recover`` refills the sentence vectors' collection: the records of the kept
        passages, read back; those that cannot be read are embedded again with ``encode``."""
        if self._sentences is None:
            return None
        want = [ids[i] for i in rows]
        try:
            with self._guard():
                have = {cid: md for got in self._pages(self._sentences, ["metadatas"])
                        for cid, md in zip(got["ids"], got["metadatas"]) if md and _derived.KEY in md}
            missing = []  # (a passage written without them keeps having none: the engine embeds those)
        except Exception:  # its index files are torn too: embed every sentence again
            have = {}
            missing = list(rows)
        if missing:
            ps = [passage_from_meta(docs[i], metas[i]) for i in missing]
            mats = _derived.encode_sentences(ps, encode)
            _, new_metas = _derived.records([ids[i] for i in missing], ps, [metas[i]["version"] for i in missing], mats)
            have.update(zip([ids[i] for i in missing], new_metas))
            notes.append(f"sentence vectors of {len(missing)} passages embedded again")
        want = [cid for cid in want if cid in have]

        def fill(col) -> None:
            for at in range(0, len(want), _BATCH):
                sl = want[at : at + _BATCH]
                col.add(ids=sl, embeddings=[[_derived.point(i)] for i in sl], metadatas=[have[i] for i in sl])

        return fill

    def _recovery_records(self) -> tuple[dict[str, list], list[str], list[str], list[dict], list[str]]:
        """The manifest's records, and the passages of the versions it names (paged reads)."""
        with self._guard():
            m_got = self._records(self._manifest, ["documents", "metadatas"])
            versions = {tid: md.get("version") for tid, md in zip(m_got["ids"], m_got["metadatas"])}
            ids, docs, metas, texts = [], [], [], []
            for got in self._pages(self._passages, ["documents", "metadatas"]):
                for cid, doc, md in zip(got["ids"], got["documents"], got["metadatas"]):
                    tid = md.get("transcript")
                    if tid in versions and md.get("version") == versions[tid]:  # stale versions go
                        ids.append(cid), docs.append(doc), metas.append(md)
                        texts.append(passage_from_meta(doc, md).embed_text)
        return m_got, ids, docs, metas, texts

    def _index_dirs(self, names: list[str] | None = None) -> list[Path]:
        """The folders of the collections' vector index files (read from Chroma's SQLite file);
        ``names``: of these collections (default: the open ones)."""
        import sqlite3

        folder = self.read_only_copy or self.settings.store
        if names is None:
            names = [self._passages.name, self._manifest.name] + ([self._sentences.name] if self._sentences is not None else [])
        db = sqlite3.connect(f"file:{folder / 'chroma.sqlite3'}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT s.id FROM segments s JOIN collections c ON s.collection = c.id "
                f"WHERE s.scope = 'VECTOR' AND c.name IN ({','.join('?' * len(names))})", names).fetchall()
        finally:
            db.close()
        return [folder / r[0] for r in rows if (folder / r[0]).is_dir()]

    def _indexed_collections(self) -> list[str]:
        """The names of the collections with vector index files: passages, manifest, sentences."""
        p_name, m_name = collection_names(self.settings.model)
        return [p_name, m_name, _derived.collection_name(p_name)]

    def _index_files_problem(self) -> str | None:
        """What is wrong with the collections' vector index files as written on disk (None:
        nothing found), checked before Chroma loads them: some damage (random bytes inside
        ``data_level0.bin``) makes its native code crash the process that loads them, even to
        count or read records, and no Python code can catch that (``_hnsw_problem``)."""
        names = self._indexed_collections()
        try:
            dirs = self._index_dirs(names + [n + _REBUILD for n in names])
        except Exception:  # no readable segment table: Chroma reports it itself
            return None
        # A scan reads every element (0.4 s at 100,000 passages): a folder whose files have the
        # size and modification time they had when a scan last passed is not scanned again. Any
        # write to them (Chroma's, or damage from outside) changes those, and brings the scan back.
        folder = self.read_only_copy or self.settings.store
        record = folder / _SCANNED
        try:
            passed = json.loads(record.read_text(encoding="utf-8"))
            passed = passed if isinstance(passed, dict) else {}
        except (OSError, ValueError):
            passed = {}
        now: dict[str, str] = {}
        for d in dirs:
            sig = _files_signature(d)
            if sig is not None and passed.get(d.name) == sig:
                now[d.name] = sig
                continue
            problem = _hnsw_problem(d)
            if problem:
                return f"{d.name}/{problem}"
            if sig is not None:
                now[d.name] = sig
        if now != passed and not self.read_only_copy:
            with contextlib.suppress(OSError):  # best effort: a read-only folder scans every time
                tmp = record.with_name(_SCANNED + f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(now, sort_keys=True), encoding="utf-8")
                os.replace(tmp, record)
        return None

    def _check_index_files(self) -> None:
        """Refuse to open a store whose vector index files would crash this process (embedded)."""
        s = self.settings
        problem = self._index_files_problem()
        for wait in (0.1, 0.2, 0.4, 0.8):  # an ingest may be rewriting them right now: look again
            if problem is None or not (s.store / _UNFINISHED).exists():
                break
            time.sleep(wait)
            problem = self._index_files_problem()
        if problem is None:
            return
        if (s.store / _UNFINISHED).exists():
            raise _IndexDamaged(
                f"the vector index in {s.store}/ is not whole ({problem}); an ingest is writing to it, or was killed",
                "Ask again when the ingest is done; if none is running, run `rag ingest` to rebuild the index.")
        raise _IndexDamaged(f"the vector index files in {s.store}/ are damaged ({problem})")

    def _set_aside_index_files(self) -> tuple[Path, list[tuple[Path, Path]]] | None:
        """Move the collections' vector index files to ``<store>/damaged-<time>/`` and reconnect,
        so that Chroma reads the records from SQLite. Returns where they went (None: nothing moved)."""
        try:
            dirs = self._index_dirs()
        except Exception:
            return None
        target = self.settings.store / f"damaged-{time.strftime('%Y%m%d-%H%M%S')}"
        moved: list[tuple[Path, Path]] = []
        try:
            for d in dirs:
                for f in sorted(d.iterdir()):
                    if f.is_file():
                        dst = target / d.name / f.name
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        os.replace(f, dst)
                        moved.append((f, dst))
        except OSError:
            self._restore_index_files((target, moved))
            return None
        if not moved:
            return None
        self.reopen()
        return target, moved

    def _restore_index_files(self, moved: tuple[Path, list[tuple[Path, Path]]]) -> None:
        for src, dst in moved[1]:
            with contextlib.suppress(OSError):
                os.replace(dst, src)
        with contextlib.suppress(Exception):
            self.reopen()

    def _index_signature(self) -> str | None:
        """Size and modification time of Chroma's SQLite file and of every vector index file of
        the store's collections, hashed (None: the files cannot be listed, or a server store)."""
        if self.settings.chroma_url or self.read_only_copy:
            return None
        folder = self.settings.store
        try:
            dirs = self._index_dirs(self._indexed_collections())
            return _stat_hash([folder / "chroma.sqlite3"] + sorted(f for d in dirs for f in d.iterdir() if f.is_file()),
                              folder)
        except Exception:  # no segment table yet, a file gone while listed: not known to be unchanged
            return None

    def _index_unchanged_since_checked(self) -> bool:
        sig = self._index_signature()
        if sig is None:
            return False
        try:
            return (self.settings.store / _CHECKED).read_text(encoding="utf-8").strip() == sig
        except OSError:
            return False

    def mark_index_checked(self, *, verify: bool = True) -> None:
        """Record the index files as they are now, known to answer: by the health check, or
        (``verify``) by this process, which wrote them and now counts both collections and runs a
        one-result search. The next ingest skips the health check while they stay the same; any
        change to them (a write, damage from outside) brings it back. Best effort; nothing to do
        for a server's store (no health check there) or when they are as recorded already (an
        ingest that changed nothing does not load the index to search it)."""
        if self.settings.chroma_url or self.read_only_copy:
            return
        try:
            if self._index_unchanged_since_checked():
                return
            if verify:
                self._manifest.count()
                if self._passages.count():
                    got = self._passages.get(limit=1, include=["embeddings"])
                    if got["ids"]:
                        self._passages.query(query_embeddings=[list(got["embeddings"][0])], n_results=1, include=[])
            sig = self._index_signature()
            if sig is not None:
                tmp = self.settings.store / (_CHECKED + ".tmp")
                tmp.write_text(sig, encoding="utf-8")
                os.replace(tmp, self.settings.store / _CHECKED)
        except Exception:  # not recorded: the next ingest checks, as before
            with contextlib.suppress(OSError):
                (self.settings.store / _CHECKED).unlink()

    def _index_health(self) -> str:
        """Whether the vector index answers a count and a one-result search: "ok", "error"
        (Chroma raised) or "crashed". Checked in a child process: some damage (random bytes
        inside ``data_level0.bin`` under an intact header) makes Chroma's native HNSW code crash
        the process that loads the index (a segmentation fault, which no Python code catches),
        and that includes reading the records. About a second (the child imports chromadb)."""
        import subprocess
        import sys

        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
        argv = [sys.executable, "-c", _HEALTH_CHILD, str(self.settings.store), self._passages.name, self._manifest.name]
        try:
            done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, timeout=_HEALTH_TIMEOUT)
        except subprocess.TimeoutExpired:
            return "error"
        if done.returncode == 0:
            return "ok"
        return "crashed" if done.returncode < 0 else "error"  # < 0: killed by a signal (SIGSEGV)

    def _replace(self, collection, configuration: dict | None, fill: Callable[[Any], None]):
        """A fresh collection, filled by ``fill``, under the old one's name. Killed while it is
        filled, the old collection stands and the copy is dropped when the store next opens;
        killed between dropping the old one and renaming the copy, the rename is finished then."""
        name = collection.name
        tmp = name + _REBUILD
        with self._guard():
            if tmp in self._collection_names():
                self._client.delete_collection(tmp)
            copy = self._client.create_collection(tmp, embedding_function=None, configuration=configuration)
            fill(copy)
            self._client.delete_collection(name)
            copy.modify(name=name)
            return self._client.get_collection(name, embedding_function=None)

    def _collection_names(self) -> set[str]:
        return {c if isinstance(c, str) else c.name for c in self._client.list_collections()}

    def _finish_rebuilds(self, names: tuple[str, ...]) -> None:
        """Complete or discard a rebuild that a kill interrupted (see ``_replace``). Only under
        the ingest lock: a copy being filled by the lock's holder must not be touched."""
        if self.settings.chroma_url:
            return
        existing = self._collection_names()
        for name in names:
            tmp = name + _REBUILD
            if tmp not in existing:
                continue
            if name in existing:
                self._client.delete_collection(tmp)  # the copy was unfinished; the original stands
            else:
                self._client.get_collection(tmp, embedding_function=None).modify(name=name)

    def _after_lock(self) -> None:
        """Just after taking the ingest lock: finish what a killed rebuild left, and open the
        collections again (another ingest may have replaced them while this one waited)."""
        if self.settings.chroma_url:
            return
        with self._guard():
            self._open_collections()  # finishes rebuilds: this Store holds the lock now

    def remove_transcript(self, transcript: str) -> None:
        with self._guard(), self._changing():
            self._manifest.delete(ids=[transcript])
            self._passages.delete(where={"transcript": transcript})
            if self._sentences is not None:
                self._sentences.delete(where={"transcript": transcript})

    # ------------------------------------------------------------------ reading

    def count(self) -> int:
        return self._read(lambda: self._passages.count())

    def all_passages(self, transcript: str | None = None, with_vectors: bool = False,
                     manifest: dict[str, TranscriptInfo] | None = None,
                     vector_dtype: Any = np.float32) -> tuple[list[Passage], np.ndarray | None]:
        """Every current passage (stale versions left by an interrupted ingest are skipped), in
        transcript order, with their vectors as a matrix of ``vector_dtype`` when asked."""
        versions = {tid: info.version for tid, info in (manifest or self.manifest()).items()}
        where = {"transcript": transcript} if transcript else None
        include = ["documents", "metadatas"] + (["embeddings"] if with_vectors else [])
        passages: list[Passage] = []
        vecs: list[Any] = []
        shared: dict[str, str] = {}
        refs: list[int] = []  # passages whose question is stored on another one (see _passage_metas)
        offset = 0
        with self._guard():
            while True:
                # pages of 1,000: Chroma's buffers for a page stay allocated after it, so larger
                # pages raise the peak memory (100,000 passages: 870 MB at 5,000, 580 MB at 1,000)
                got = self._passages.get(where=where, include=include, limit=1000, offset=offset)
                if not got["ids"]:
                    break
                keep = []
                for i, (doc, md) in enumerate(zip(got["documents"], got["metadatas"])):
                    if versions.get(md["transcript"]) != md.get("version"):
                        continue
                    passages.append(passage_from_meta(doc, md, shared))
                    keep.append(i)
                    if md.get(_QREF):
                        refs.append(len(passages) - 1)
                if with_vectors and keep:
                    vecs.append(np.asarray(got["embeddings"], dtype=np.float32)[keep].astype(vector_dtype))
                offset += len(got["ids"])
                del got
        _resolve_questions(passages, refs)
        order = sorted(range(len(passages)), key=lambda i: (passages[i].transcript, passages[i].turns, passages[i].part))
        passages = [passages[i] for i in order]
        matrix = None
        if with_vectors:
            matrix = np.concatenate(vecs)[order] if vecs else np.zeros((0, 0), dtype=vector_dtype)
        return passages, matrix

    def query(self, vector: np.ndarray, n: int, where: dict | None = None) -> list[tuple[str, float]]:
        """Nearest passages as (chroma id, cosine similarity), stale versions included;
        the caller keeps only current ones."""
        with self._guard():
            # ``n`` must not exceed the collection's size (the caller knows it; a count() here costs a
            # round trip per question)
            got = self._passages.query(query_embeddings=[vector.tolist()], n_results=n, where=where, include=["distances"])
        return [(i, 1.0 - d) for i, d in zip(got["ids"][0], got["distances"][0])]

    # ------------------------------------------------------------------ locking

    @contextlib.contextmanager
    def ingest_lock(self, wait: bool = False) -> Iterator[None]:
        """One writer at a time. Embedded: a file lock in the store folder. Server: a lock record
        in the manifest collection that expires if its holder died."""
        if self.settings.chroma_url:
            with self._server_lock(wait):
                yield
            return
        import fcntl

        path = self.settings.store / "ingest.lock"
        with open(path, "a+") as fh:
            flags = fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB)
            try:
                fcntl.flock(fh, flags)
            except BlockingIOError:
                raise IngestLockedError(f"another ingest is running on {self.settings.store}/") from None
            self._lock_held = True
            try:
                self._after_lock()
                yield
            finally:
                self._lock_held = False
                fcntl.flock(fh, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _server_lock(self, wait: bool) -> Iterator[None]:
        lock_id = "__ingest_lock__"
        me = f"{os.uname().nodename}:{os.getpid()}:{time.time()}"
        deadline = time.time() + (3600 if wait else 0)
        with self._guard():
            coll = self._client.get_or_create_collection(self._manifest.name + "_lock", embedding_function=None)
            while True:
                got = coll.get(ids=[lock_id], include=["metadatas"])
                held = got["ids"] and time.time() - got["metadatas"][0]["at"] < 600
                if not held:
                    coll.upsert(ids=[lock_id], embeddings=[[1.0]], metadatas=[{"owner": me, "at": time.time()}])
                    time.sleep(0.05)
                    got = coll.get(ids=[lock_id], include=["metadatas"])
                    if got["ids"] and got["metadatas"][0]["owner"] == me:
                        break
                if time.time() >= deadline:
                    raise IngestLockedError(f"another ingest is running on {self.settings.chroma_url}")
                time.sleep(0.5)
        failed = False
        try:
            yield
        except BaseException as exc:
            failed = True
            self._release_server_lock(coll, lock_id, exc)
            raise
        finally:
            if not failed:
                self._release_server_lock(coll, lock_id, None)

    def _release_server_lock(self, coll: Any, lock_id: str, error: BaseException | None) -> None:
        """Delete the lock record. When that fails (the server went away), the lock expires by
        itself after 10 minutes; an error the ingest itself raised is never hidden by this one."""
        try:
            with self._guard():
                coll.delete(ids=[lock_id])
        except Exception as exc:
            note = ("The ingest lock could not be released; if the server kept it, it expires 10 minutes "
                    "after it was taken.")
            if error is None:
                raise StoreUnavailableError(f"{exc} (the ingest itself finished)",
                                            f"{getattr(exc, 'help_message', '')} {note}".strip()) from None
            if isinstance(error, StoreError):
                error.help_message = f"{error.help_message} {note}".strip()
            elif isinstance(error, Exception):
                error.add_note(note)


def _is_connection_error(exc: Exception) -> bool:
    text = f"{type(exc).__name__} {exc}".lower()
    return any(w in text for w in ("connect", "refused", "timeout", "timed out", "unreachable", "could not connect", "remoteprotocol", "readerror"))


def _manifest_meta(t: Transcript, passages: list[Passage], file_hash: str) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for p in passages:
        counts[p.kind] = counts.get(p.kind, 0) + 1
    units = {p.kind + "@" + str(p.turns) for p in passages}  # parts of one answer count once
    unit_counts: dict[str, int] = {}
    for u in units:
        kind = u.split("@")[0]
        unit_counts[kind] = unit_counts.get(kind, 0) + 1
    turns_by_speaker: dict[str, int] = {}
    for turn in t.turns:
        if turn.speaker:
            turns_by_speaker[turn.speaker] = turns_by_speaker.get(turn.speaker, 0) + 1
    speakers = [
        {"tag": s.tag, "name": s.name, "role": s.role, "description": s.description,
         "aliases": s.aliases, "turns": turns_by_speaker.get(k, 0), "names": s.names}
        for k, s in t.speakers.items()
    ]
    return {
        "hash": file_hash,
        "version": file_hash[:16],
        "title": t.title,
        "date": t.date,
        "source": t.source,
        "format": t.format,
        "speakers": json.dumps(speakers),
        "counts": json.dumps(counts),
        "units": json.dumps(unit_counts),
        "warnings": json.dumps(t.warnings),
        "ingested_at": time.time(),
    }


def _passage_meta(p: Passage, version: str) -> dict[str, Any]:
    md: dict[str, Any] = {
        "chunk_id": p.chunk_id,
        "transcript": p.transcript,
        "version": version,
        "title": p.title,
        "date": p.date,
        "kind": p.kind,
        "speaker": p.speaker,
        "role": p.role,
        "question": p.question,
        "question_speaker": p.question_speaker,
        "turn_first": p.turns[0],
        "turn_last": p.turns[1],
        "start_char": p.start_char,
        "end_char": p.end_char,
        "part": p.part,
        "comment_date": p.comment_date,
        "embed_question": p.embed_question,
        "segments": _segments_json(p.segments),
        "qsegments": _segments_json(p.question_segments),
    }
    if p.start_time is not None:
        md["start_time"] = float(p.start_time)
    if p.end_time is not None:
        md["end_time"] = float(p.end_time)
    return md


def _passage_metas(passages: list[Passage], version: str) -> list[dict[str, Any]]:
    """The passages' metadata, each question stored once: the first passage of a transcript that
    carries a question holds its text and segments; the other parts of a split answer (and other
    answers to the same question) hold a reference instead (``_QREF``: the question is that of
    the passage of the same transcript with the same first turn, the question's turn). A 130 KB
    question whose answer was cut into 250 parts made a 110 MB store when each part copied it.
    The embedded question (``embed_question``, at most QUESTION_TOKEN_CAP tokens) stays in each
    part: it is part of what the part's vector was computed from, and recovery re-embeds it."""
    held: set[tuple[str, int]] = set()
    out = []
    for p in passages:
        md = _passage_meta(p, version)
        if p.question:
            key = (p.transcript, p.turns[0])
            if key in held:
                md["question"], md["qsegments"], md[_QREF] = "", "[]", 1
            held.add(key)
        out.append(md)
    return out


def _resolve_questions(passages: list[Passage], refs: list[int]) -> None:
    """Fill in the question of passages that reference it (``_passage_metas``), from the passage
    of the same transcript and first turn that holds it; all of a transcript's passages are
    loaded together, so the holder is among ``passages``."""
    if not refs:
        return
    ref_set = set(refs)
    holders = {(p.transcript, p.turns[0]): p for i, p in enumerate(passages) if p.question and i not in ref_set}
    for i in refs:
        p = passages[i]
        holder = holders.get((p.transcript, p.turns[0]))
        if holder is not None:
            p.question, p.question_segments = holder.question, holder.question_segments


def _segments_json(segments: list[Segment]) -> str:
    return json.dumps([[s.start, s.end, len(s.text), _SEPS.get(s.sep, 0)] for s in segments])


def _segments_from(text: str, data: str) -> list[Segment]:
    """Rebuild segments from their stored layout and the joined text."""
    segs: list[Segment] = []
    pos = 0
    for i, (start, end, length, sep) in enumerate(json.loads(data)):
        sep_s = _SEP_OF.get(sep, "\n")
        if i:
            pos += len(sep_s)
        segs.append(Segment(text[pos : pos + length], start, end, sep=sep_s))
        pos += length
    return segs


def passage_from_meta(doc: str, md: dict[str, Any], shared: dict[str, str] | None = None) -> Passage:
    """``shared``: strings already seen while loading many passages; equal ones (titles,
    speakers, the question every part of an answer carries) are kept once."""
    one = (lambda v: shared.setdefault(v, v)) if shared is not None else (lambda v: v)
    segs = _segments_from(doc, md["segments"])
    question = one(md.get("question", ""))
    return Passage(
        chunk_id=md["chunk_id"],
        transcript=one(md["transcript"]),
        title=one(md.get("title", "")),
        date=one(md.get("date", "")),
        kind=one(md["kind"]),
        speaker=one(md.get("speaker", "")),
        role=one(md.get("role", "other")),
        text=doc,
        segments=segs,
        turns=(int(md["turn_first"]), int(md["turn_last"])),
        start_char=int(md["start_char"]),
        end_char=int(md["end_char"]),
        question=question,
        question_speaker=one(md.get("question_speaker", "")),
        part=int(md.get("part", 0)),
        start_time=md.get("start_time"),
        end_time=md.get("end_time"),
        comment_date=one(md.get("comment_date", "")),
        embed_question=one(md.get("embed_question", "")),
        question_segments=_segments_from(question, md.get("qsegments", "[]")),
    )


def _stat_hash(files: Sequence[Path], base: Path) -> str:
    """Path (relative to ``base``), size and modification time (ns) of each file, hashed."""
    parts = [f"{f.relative_to(base)}:{st.st_size}:{st.st_mtime_ns}" for f in files for st in (f.stat(),)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _files_signature(folder: Path) -> str | None:
    """``_stat_hash`` of every file in ``folder``; None when it cannot be listed."""
    try:
        return _stat_hash(sorted(f for f in folder.iterdir() if f.is_file()), folder)
    except OSError:
        return None


_HNSW_HEADER = struct.Struct("<iQQQQQQiIQQQdQ")  # header.bin as Chroma's hnswlib writes it (persist version 1)


def _hnsw_problem(folder: Path) -> str | None:
    """Check one HNSW index as Chroma persisted it (``header.bin``, ``data_level0.bin``,
    ``link_lists.bin``): every element's neighbour count within the graph's
    degree and every neighbour an element of the graph, labels distinct, vectors finite and of
    a sane size. Random bytes there make Chroma's native code read out of bounds and crash the
    process (or search garbage). Vectorised over memory maps: about 1 ms per 1,000 elements.
    Missing or empty files are left to Chroma, which reports them with an error of its own."""
    header, level0 = folder / "header.bin", folder / "data_level0.bin"
    try:
        raw = header.read_bytes()
        size0 = level0.stat().st_size
    except OSError:
        return None
    if len(raw) != _HNSW_HEADER.size:
        return None if not raw else f"header.bin: {len(raw)} bytes, not {_HNSW_HEADER.size}"
    (_, off0, max_el, count, per_el, label_off, data_off, max_level, entry, max_m, max_m0, _m, _mult,
     _ef) = _HNSW_HEADER.unpack(raw)
    dim = (label_off - data_off) // 4
    if (off0 != 0 or count > max_el or data_off != 4 + 4 * max_m0 or per_el != label_off + 8 or dim < 1
            or max_m0 > 4096 or max_m > max_m0 or (count and not (0 <= max_level < 64 and entry < count))):
        return "header.bin: inconsistent values"
    if size0 < count * per_el:
        return f"data_level0.bin: {size0} bytes for {count} elements of {per_el}"
    if not count:
        return None
    data = np.memmap(level0, dtype=np.uint8, mode="r", shape=(count * per_el,))
    links = np.ndarray((count, 1 + max_m0), dtype="<u4", buffer=data, strides=(per_el, 4))
    if _links_problem(links, max_m0, count):
        return "data_level0.bin: neighbour lists out of range"
    labels = np.ndarray((count,), dtype="<u8", buffer=data, offset=label_off, strides=(per_el,))
    if len(np.unique(labels)) != count:
        return "data_level0.bin: repeated labels"
    for at in range(0, count, 50_000):  # in slices: a float copy of all vectors at once would be large
        n = min(50_000, count - at)
        vecs = np.ndarray((n, dim), dtype="<f4", buffer=data, offset=at * per_el + data_off, strides=(per_el, 4))
        with np.errstate(all="ignore"):
            if not (np.abs(vecs) <= _HNSW_MAX_VALUE).all():  # NaN compares false
                return "data_level0.bin: vectors not finite or out of range"
    del data, links, labels
    try:  # (length.bin holds norms in a cosine index, and nothing to check otherwise)
        upper = np.fromfile(folder / "link_lists.bin", dtype="<u4")
    except OSError:
        return None
    # link_lists.bin: per element, its upper levels' size in bytes, then those levels' lists
    per_level = 1 + max_m
    starts, at = [], 0
    for _ in range(count):
        if at >= upper.size:
            return "link_lists.bin: shorter than its elements"
        size = int(upper[at])
        if size % (per_level * 4) or size // (per_level * 4) > max_level:
            return "link_lists.bin: a level size out of range"
        if size:
            starts.append((at + 1, size // 4))
        at += 1 + size // 4
    if at != upper.size:
        return "link_lists.bin: longer than its elements"
    if starts:
        rows = np.concatenate([upper[a : a + n] for a, n in starts]).reshape(-1, per_level)
        if _links_problem(rows, max_m, count):
            return "link_lists.bin: neighbour lists out of range"
    return None


_HNSW_MAX_VALUE = 1e6  # no embedding has a coordinate this large; random bytes as floats mostly do


def _links_problem(rows: np.ndarray, degree: int, count: int) -> bool:
    """Rows of [count word, neighbour ids…]: a count (its low 16 bits; the rest are flags) over
    ``degree``, or a listed neighbour that is not an element."""
    n = rows[:, 0] & 0xFFFF
    if (n > degree).any():
        return True
    listed = np.arange(degree)[None, :] < n[:, None]
    return bool(((rows[:, 1:] >= count) & listed).any())


def _gen_meta(n: int, open_: bool) -> dict[str, Any]:
    """A generation: its number, a token no other generation has, and while open who is writing."""
    import uuid

    return {"n": n, "token": uuid.uuid4().hex, "open": open_,
            "owner": f"{os.uname().nodename}:{os.getpid()}" if open_ else "", "at": time.time()}


def _writer_alive(owner: str, at: float) -> bool:
    """Whether the process that opened a generation may still be writing: on this host, whether
    it runs; on another (a shared server), whether it opened it less than _WRITER_SILENT ago."""
    host, _, pid = owner.rpartition(":")
    if host != os.uname().nodename or not pid.isdigit():
        return time.time() - at < _WRITER_SILENT
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _row(tid: str, md: dict[str, Any]) -> list:
    """A manifest record, decoded: the fields of TranscriptInfo in order (speakers as dicts), as
    saved in ``manifest.cache``."""
    return [tid, md.get("hash", ""), md.get("version", ""), md.get("title", tid), md.get("date", ""),
            md.get("source", ""), md.get("format", ""), json.loads(md.get("speakers", "[]")),
            json.loads(md.get("counts", "{}")), json.loads(md.get("units", "{}")),
            json.loads(md.get("warnings", "[]")), float(md.get("ingested_at", 0.0))]


def _info_of(row: list) -> TranscriptInfo:
    tid, hash_, version, title, date, source, format_, speakers, counts, units, warnings, at = row
    return TranscriptInfo(
        id=tid, hash=hash_, version=version, title=title, date=date, source=source, format=format_,
        speakers=[Speaker(tag=s["tag"], name=s["name"], role=s.get("role") or "other",
                          description=s.get("description", ""), aliases=s.get("aliases", []),
                          turns=s.get("turns", 0), names=s.get("names", [])) for s in speakers],
        counts=counts, units=units, warnings=warnings, ingested_at=at)


def _info(tid: str, md: dict[str, Any]) -> TranscriptInfo:
    return _info_of(_row(tid, md))
