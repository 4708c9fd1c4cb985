"""What the query path derives from the passages, written once and read back by every process.

A process that opens the store needs every passage (with its vector), the BM25 indexes, the
filter rows, the corpus's words and speakers (``_retrieve.Index``, ``_query.Corpus``) and the idf
table. Built from Chroma, that costs a read of every record and a pass over every passage (at
100,000 passages about 90 s, docs/BENCHMARKS.md section 9). A snapshot holds all of it in files
that open in milliseconds: it is written at ingest (or, when missing or stale, by the first
process that builds the view), and every later process reads it instead.

Layout: ``<folder>/<collection>-<fingerprint>/`` (``folder``: ``<store>/snapshots`` embedded; in
server mode a local cache folder, ``Settings.cache_dir``), holding

* ``meta.json``: format, the store's fingerprint, the passages' collection, a hash of the code that
  derives the data (``code_hash``), the passage count, each file's size; written last.
* ``passages/``: the passages in columns. Fields with few distinct values (transcript, speaker,
  role, ...) as a JSON list of values and an int32 ``.npy`` of codes; long text (answer,
  question, segments) as one UTF-8 ``.npy`` of bytes and an int64 ``.npy`` of offsets, read with
  memory mapping; numbers as ``.npy``. A ``Passage`` is made when it is first asked for.
* ``vectors.npy``: the passage vectors, float16, memory-mapped.
* ``bm25/``, ``bm25_answer/``: bm25s's own format (``.npy`` arrays and JSON), memory-mapped.
* ``rows.json`` + ``rows.npy``: the filter rows (``Index._rows``).
* ``corpus.json``: the corpus words, transcript titles and who speaks where; ``idf.json``;
  ``manifest.json``: the manifest the view was built from (the fingerprint is made from it).

No pickle anywhere: ``.npy`` files are read with ``allow_pickle=False`` and the rest is JSON, so a
store folder from someone else cannot run code when it is opened.

Crash safety: a snapshot is written to ``<name>.tmp-<pid>`` and renamed into place whole (a
SIGKILL leaves only a temporary folder, removed by the next writer); a snapshot is only used when
its folder name, its ``meta.json`` fingerprint and collection, the code hash and every file's size
match; anything wrong with it (unreadable, damaged) and the view is built from Chroma as before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ._records import Passage, Speaker
from ._settings import Settings

FORMAT = 1
_META = "meta.json"
# the fields with few distinct values, kept as codes into a list of values
_CODED = ("transcript", "title", "date", "kind", "speaker", "role", "question_speaker", "comment_date")
_TEXT = ("text", "question", "embed_question", "segments", "qsegments")  # one bytes column each
_INTS = ("turn_first", "turn_last", "start_char", "end_char", "part")
_FLOATS = ("start_time", "end_time")  # NaN for None
# the modules whose code decides what is derived (tokens, stems, words, rows, idf, passages):
# a change to any of them makes existing snapshots stale
_CODE = ("_snapshot.py", "_retrieve.py", "_query.py", "_text.py", "_answer.py", "_store.py", "_records.py", "_engine.py")


def folder(settings: Settings) -> Path:
    """Where this store's snapshots live: beside an embedded store; in server mode a local cache
    folder per server URL (each machine builds its own, once per store version)."""
    if settings.chroma_url:
        base = settings.cache_dir or Path.home() / ".cache" / "rag"
        return base / "snapshots" / hashlib.sha1(settings.chroma_url.encode()).hexdigest()[:12]
    return settings.store / "snapshots"


def _name(collection: str, fingerprint: str) -> str:
    return f"{collection}-{fingerprint}"


_code_hash: str | None = None


def code_hash() -> str:
    """A hash of the code that derives the snapshot's content and of the bm25s version."""
    global _code_hash
    if _code_hash is None:
        import bm25s

        h = hashlib.sha1(f"{FORMAT} {getattr(bm25s, '__version__', '')} {np.__version__}".encode())
        here = Path(__file__).parent
        for name in _CODE:
            try:
                h.update((here / name).read_bytes())
            except OSError:  # not installed as files: the format number alone
                h.update(name.encode())
        _code_hash = h.hexdigest()
    return _code_hash


@dataclasses.dataclass
class View:
    """The in-memory view of the store an engine answers from."""

    index: Any  # _retrieve.Index
    idf: dict[str, float]
    manifest: dict[str, Any]  # transcript id -> TranscriptInfo


# ---------------------------------------------------------------------------- passages in columns


class PassageTable(Sequence[Passage]):
    """The passages of a snapshot, read from its columns: a ``Passage`` is made (and kept) when
    first asked for, so opening 100,000 passages makes none."""

    def __init__(self, path: Path, n: int) -> None:
        self._n = n
        self._coded: dict[str, tuple[list[str], np.ndarray]] = {}
        for f in _CODED:
            values = json.loads((path / f"{f}.json").read_text(encoding="utf-8"))
            self._coded[f] = (values, _load(path / f"{f}.npy"))
        self._text = {f: (_load(path / f"{f}.npy"), _load(path / f"{f}.at.npy")) for f in _TEXT}
        self._nums = {f: _load(path / f"{f}.npy") for f in _INTS + _FLOATS}
        self.chunk_ids: list[str] = json.loads((path / "chunk_id.json").read_text(encoding="utf-8"))
        self._made: dict[int, Passage] = {}
        self._joined: tuple[str] | None = None
        if len(self.chunk_ids) != n:
            raise ValueError("chunk ids do not match the passage count")

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        i = int(i)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(i)
        p = self._made.get(i)
        if p is None:
            p = self._made[i] = self._make(i)
        return p

    def __iter__(self) -> Iterator[Passage]:
        for i in range(self._n):
            yield self[i]

    def value(self, field: str, i: int) -> str:
        """One coded field of passage ``i`` without making the passage."""
        values, codes = self._coded[field]
        return values[codes[i]]

    def text(self, field: str, i: int) -> str:
        data, at = self._text[field]
        return bytes(data[at[i] : at[i + 1]]).decode("utf-8", "surrogatepass")

    def texts(self, field: str = "text") -> Iterator[str]:
        """Every passage's ``field``, in order, without making the passages."""
        data, at = self._text[field]
        raw = bytes(data)
        for i in range(self._n):
            yield raw[at[i] : at[i + 1]].decode("utf-8", "surrogatepass")

    def joined_texts(self) -> tuple[str]:
        """Every passage's answer text, joined by newlines into one string (made once): what
        ``Corpus`` searches a word in with one regular-expression pass (a word is never written
        across a newline, so it is found in the joined text exactly when in one of the texts)."""
        if self._joined is None:
            self._joined = ("\n".join(self.texts()),)
        return self._joined

    def _make(self, i: int) -> Passage:
        from ._store import passage_from_meta

        md: dict[str, Any] = {f: self.value(f, i) for f in _CODED}
        md.update({f: int(self._nums[f][i]) for f in _INTS})
        for f in _FLOATS:
            v = float(self._nums[f][i])
            if not np.isnan(v):
                md[f] = v
        md.update({f: self.text(f, i) for f in ("question", "embed_question", "segments", "qsegments")})
        md["chunk_id"] = self.chunk_ids[i]
        return passage_from_meta(self.text("text", i), md)


def _write_columns(path: Path, passages: Sequence[Passage]) -> None:
    from ._store import _segments_json

    path.mkdir()
    for f in _CODED:
        codes: dict[str, int] = {}
        col = np.fromiter((codes.setdefault(getattr(p, f), len(codes)) for p in passages), dtype=np.int32, count=len(passages))
        (path / f"{f}.json").write_text(json.dumps(list(codes), ensure_ascii=False), encoding="utf-8")
        _save(path / f"{f}.npy", col)
    getters = {
        "text": lambda p: p.text, "question": lambda p: p.question, "embed_question": lambda p: p.embed_question,
        "segments": lambda p: _segments_json(p.segments), "qsegments": lambda p: _segments_json(p.question_segments),
    }
    for f in _TEXT:
        parts = [getters[f](p).encode("utf-8", "surrogatepass") for p in passages]
        at = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in parts], out=at[1:])
        _save(path / f"{f}.npy", np.frombuffer(b"".join(parts), dtype=np.uint8))
        _save(path / f"{f}.at.npy", at)
    nums = {
        "turn_first": lambda p: p.turns[0], "turn_last": lambda p: p.turns[1], "start_char": lambda p: p.start_char,
        "end_char": lambda p: p.end_char, "part": lambda p: p.part,
    }
    for f in _INTS:
        _save(path / f"{f}.npy", np.array([nums[f](p) for p in passages], dtype=np.int64))
    for f in _FLOATS:
        vals = [getattr(p, f) for p in passages]
        _save(path / f"{f}.npy", np.array([np.nan if v is None else float(v) for v in vals], dtype=np.float64))
    (path / "chunk_id.json").write_text(json.dumps([p.chunk_id for p in passages], ensure_ascii=False), encoding="utf-8")


def _save(path: Path, array: np.ndarray) -> None:
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)


def _load(path: Path) -> np.ndarray:
    """A memory-mapped array, as a plain ndarray view (numpy's memmap class makes every element
    access several times slower: 0.3 of the 1 s it took to make 8,000 passages)."""
    return np.load(path, mmap_mode="r", allow_pickle=False).view(np.ndarray)


# ---------------------------------------------------------------------------- manifest


def _manifest_json(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(info) for info in manifest.values()]


def _manifest_from(data: list[dict[str, Any]]) -> dict[str, Any]:
    from ._store import TranscriptInfo

    out = {}
    for d in data:
        d = dict(d)
        d["speakers"] = [Speaker(**s) for s in d["speakers"]]
        out[d["id"]] = TranscriptInfo(**d)
    return out


# ---------------------------------------------------------------------------- write


def write(settings: Settings, collection: str, view: View) -> Path | None:
    """Write ``view`` as the snapshot of its fingerprint (nothing when it is already there, or
    when the folder cannot be written: a read-only store is still read as before). Returns its
    folder, or None when nothing was written."""
    index = view.index
    base = folder(settings)
    final = base / _name(collection, index.fingerprint)
    if _meta(final, collection, index.fingerprint) is not None:
        return None
    if not settings.chroma_url and not _writable(settings.store):
        return None
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    _remove_abandoned(base)
    tmp = base / f"{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        _write_content(tmp, collection, view)
        _sync_folder(tmp)
        if final.exists():
            if _meta(final, collection, index.fingerprint) is not None:  # another process wrote it meanwhile
                shutil.rmtree(tmp, ignore_errors=True)
                return None
            shutil.rmtree(final, ignore_errors=True)  # damaged, or made by other code: replaced
        try:
            os.rename(tmp, final)
        except OSError:  # another process put the same snapshot there first
            shutil.rmtree(tmp, ignore_errors=True)
            return None
        _fsync_dir(base)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _remove_others(base, collection, final.name)
    return final


def _write_content(tmp: Path, collection: str, view: View) -> None:
    index = view.index
    _write_columns(tmp / "passages", index.passages)
    vectors = index.vectors if index.vectors is not None else np.zeros((len(index), 0), dtype=np.float16)
    _save(tmp / "vectors.npy", np.asarray(vectors, dtype=np.float16))
    _save(tmp / "n_words.npy", np.asarray(index.n_words, dtype=np.int64))
    if len(index):
        index.bm25.save(tmp / "bm25", show_progress=False)
        index.bm25_answer.save(tmp / "bm25_answer", show_progress=False)
    keys, rows, at = {}, [], [0]
    for key, groups in index._rows.items():
        keys[key] = list(groups)
        for v in groups.values():
            rows.append(v)
            at.append(at[-1] + len(v))
    (tmp / "rows.json").write_text(json.dumps({"keys": keys, "at": at}, ensure_ascii=False), encoding="utf-8")
    _save(tmp / "rows.npy", np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, dtype=np.int64))
    c = index.corpus
    entries = [[e.name, e.role, sorted(e.names), sorted(e.titles), e.phrases, sorted(e.heads), sorted(e.title_phrases),
                sorted(e.caps)] for e in c.speakers]
    corpus = {"words": sorted(c.words), "titles": c.titles, "people": {k: sorted(v) for k, v in c.people.items()},
              "vocab": sorted(index.vocab), "speakers": entries}
    (tmp / "corpus.json").write_text(json.dumps(corpus, ensure_ascii=False), encoding="utf-8")
    (tmp / "idf.json").write_text(json.dumps(view.idf, ensure_ascii=False), encoding="utf-8")
    (tmp / "manifest.json").write_text(json.dumps(_manifest_json(view.manifest), ensure_ascii=False), encoding="utf-8")
    sizes = {str(f.relative_to(tmp)): f.stat().st_size for f in sorted(tmp.rglob("*")) if f.is_file()}
    meta = {"format": FORMAT, "fingerprint": index.fingerprint, "collection": collection, "code": code_hash(),
            "passages": len(index), "versions": index.versions, "sizes": sizes, "written_at": time.time()}
    (tmp / _META).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")


def _writable(store: Path) -> bool:
    from ._store import writable

    return writable(store)


def _sync_folder(path: Path) -> None:
    """Flush the files to disk before the rename makes them visible (a power cut then leaves the
    old state or the whole new snapshot; the sizes in meta.json catch the rest)."""
    for f in path.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    for d in [path, *(d for d in path.rglob("*") if d.is_dir())]:
        _fsync_dir(d)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_TMP = re.compile(r"\.tmp-(\d+)$")


def _remove_abandoned(base: Path) -> None:
    """Temporary folders of writers that are gone (killed while writing)."""
    for d in base.iterdir():
        m = _TMP.search(d.name)
        if m and not _alive(int(m.group(1))):
            shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # an earlier attempt of this process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_others(base: Path, collection: str, keep: str) -> None:
    """Older snapshots of this collection (a process still reading one keeps its open files)."""
    for d in base.iterdir():
        if d.name != keep and d.name.startswith(collection + "-") and not _TMP.search(d.name) and d.is_dir():
            shutil.rmtree(d, ignore_errors=True)


def forget_collections(settings: Settings, collections: Iterable[str]) -> None:
    """Snapshots of passage collections that are gone (an earlier chunker version's, removed by
    ``Store.drop_older_versions``): nothing will read them again."""
    base = folder(settings)
    if not base.is_dir():
        return
    for collection in collections:
        _remove_others(base, collection, keep="")


# ---------------------------------------------------------------------------- read


def _meta(path: Path, collection: str, fingerprint: str) -> dict[str, Any] | None:
    """The snapshot's meta.json when it is the one asked for, made by this code, with every file
    of the size it was written with; else None."""
    try:
        meta = json.loads((path / _META).read_text(encoding="utf-8"))
        if (not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("fingerprint") != fingerprint
                or meta.get("collection") != collection or meta.get("code") != code_hash()):
            return None
        for rel, size in meta["sizes"].items():
            if (path / rel).stat().st_size != size:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return meta


def ready(settings: Settings, collection: str, fingerprint: str) -> bool:
    """Is the snapshot of this fingerprint there, whole?"""
    return _meta(folder(settings) / _name(collection, fingerprint), collection, fingerprint) is not None


def latest(settings: Settings, collection: str) -> View | None:
    """The newest usable snapshot of this collection, of whichever version of the store."""
    try:
        found = [d for d in folder(settings).iterdir()
                 if d.name.startswith(collection + "-") and not _TMP.search(d.name) and d.is_dir()]
        found.sort(key=lambda d: d.stat().st_mtime, reverse=True)
    except OSError:
        return None
    for d in found:
        view = read(settings, collection, d.name[len(collection) + 1 :])
        if view is not None:
            return view
    return None


def read(settings: Settings, collection: str, fingerprint: str) -> View | None:
    """The snapshot of this fingerprint, or None when there is none that matches in every way."""
    path = folder(settings) / _name(collection, fingerprint)
    meta = _meta(path, collection, fingerprint)
    if meta is None:
        return None
    try:
        return _read_content(path, meta, fingerprint)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None  # damaged: built from the store instead


def _read_content(path: Path, meta: dict[str, Any], fingerprint: str) -> View:
    import bm25s

    from ._query import Corpus, SpeakerEntry
    from ._retrieve import Index

    n = int(meta["passages"])
    passages = PassageTable(path / "passages", n)
    vectors = _load(path / "vectors.npy")
    if vectors.shape[0] != n:
        raise ValueError("vectors do not match the passage count")
    manifest = _manifest_from(json.loads((path / "manifest.json").read_text(encoding="utf-8")))
    speakers = [s for info in manifest.values() for s in info.speakers]
    rows_meta = json.loads((path / "rows.json").read_text(encoding="utf-8"))
    flat = _load(path / "rows.npy")
    at = rows_meta["at"]
    rows: dict[str, dict[str, np.ndarray]] = {}
    j = 0
    for key, values in rows_meta["keys"].items():
        rows[key] = {}
        for v in values:
            rows[key][v] = flat[at[j] : at[j + 1]]
            j += 1
    c = json.loads((path / "corpus.json").read_text(encoding="utf-8"))
    entries = [SpeakerEntry(name, role, set(names), set(titles), list(phrases), set(heads), set(title_phrases), set(caps))
               for name, role, names, titles, phrases, heads, title_phrases, caps in c["speakers"]]
    corpus = Corpus.restored(entries, speakers, words=set(c["words"]), titles=c["titles"],
                             people={k: set(v) for k, v in c["people"].items()}, texts=passages.joined_texts)
    bm25 = bm25_answer = None
    if n:
        bm25 = bm25s.BM25.load(path / "bm25", mmap=True, allow_pickle=False, show_progress=False)
        bm25_answer = bm25s.BM25.load(path / "bm25_answer", mmap=True, allow_pickle=False, show_progress=False)
    index = Index.restored(passages, speakers, dict(meta["versions"]), fingerprint, vectors if vectors.shape[1] else None,
                           bm25=bm25, bm25_answer=bm25_answer, n_words=_load(path / "n_words.npy"),
                           vocab=set(c["vocab"]), corpus=corpus, rows=rows, chunk_ids=passages.chunk_ids)
    idf = json.loads((path / "idf.json").read_text(encoding="utf-8"))
    return View(index, idf, manifest)
