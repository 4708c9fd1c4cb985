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
* ``bm25/``, ``bm25_answer/``: bm25s's own format (``.npy`` arrays and JSON), memory-mapped, and
  ``tf.npy``: each matrix entry's term count (``_retrieve.Lexicon``), for updates.
* ``rows.json`` + ``rows.npy``: the filter rows (``Index._rows``).
* ``corpus.json``: the corpus words, transcript titles and who speaks where; ``idf.json``;
  ``counts.json``: how many passages hold each corpus word and each idf term, for updates;
  ``manifest.json``: the manifest the view was built from (the fingerprint is made from it).

After an ingest, the new snapshot is written from the previous one by what changed (``update``):
unchanged transcripts' columns, vectors and counts are copied, only changed transcripts are read
from the store and tokenized, and what depends on every passage (BM25 weights, idf, filter rows)
is recomputed from the counts with numpy.

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
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ._records import Passage, Speaker
from ._settings import Settings

FORMAT = 2  # 2: the BM25 term counts (``bm25*/tf.npy``) and ``counts.json``, for updates
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
    df: dict[str, int] | None = None  # what idf is made from (``_engine.term_counts``; counted when written if None)


# ---------------------------------------------------------------------------- passages in columns


_WORDISH = re.compile(rb"[\w'\-\x80-\xff]")  # a byte that continues a word (any byte of a non-ASCII character does)


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

    def has_word(self, word: str) -> bool:
        """Is ``word`` written, as it is spelt (case included), as a whole word in some passage's
        answer text? What ``Corpus`` asks of a speaker's name written in lower case. One pass of a
        bytes regular expression over the memory-mapped texts: no text is decoded and no string
        made (joining 600,000 texts into one took 2 GB and 4.7 s). A byte of a non-ASCII
        character next to it counts as part of a word, as "’" does in "Young’s"."""
        data, at = self._text["text"]
        if not len(data) or not word:
            return False
        buf = memoryview(data)
        for m in re.finditer(re.escape(word.encode("utf-8")), buf):
            a, b = m.start(), m.end()
            i = int(np.searchsorted(at, a, side="right")) - 1
            start, end = int(at[i]), int(at[i + 1])  # the text it is in (the texts lie back to back)
            if b <= end and (a == start or not _WORDISH.match(buf[a - 1 : a])) and (b == end or not _WORDISH.match(buf[b : b + 1])):
                return True
        return False

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


@dataclasses.dataclass
class _Columns:
    """Passages in columns, in memory (as ``PassageTable`` holds them): coded fields as (values,
    codes), text as (UTF-8 bytes, offsets), numbers, chunk ids."""

    coded: dict[str, tuple[list[str], np.ndarray]]
    text: dict[str, tuple[np.ndarray, np.ndarray]]
    nums: dict[str, np.ndarray]
    chunk_ids: list[str]

    def __len__(self) -> int:
        return len(self.chunk_ids)

    @classmethod
    def of(cls, passages: Sequence[Passage]) -> "_Columns":
        from ._retrieve import _codes
        from ._store import _segments_json

        coded = {}
        for f in _CODED:
            values, codes = _codes([getattr(p, f) for p in passages])
            coded[f] = (values, codes.astype(np.int32))
        getters = {
            "text": lambda p: p.text, "question": lambda p: p.question, "embed_question": lambda p: p.embed_question,
            "segments": lambda p: _segments_json(p.segments), "qsegments": lambda p: _segments_json(p.question_segments),
        }
        text = {}
        for f in _TEXT:
            parts = [getters[f](p).encode("utf-8", "surrogatepass") for p in passages]
            at = np.zeros(len(parts) + 1, dtype=np.int64)
            np.cumsum([len(b) for b in parts], out=at[1:])
            text[f] = (np.frombuffer(b"".join(parts), dtype=np.uint8), at)
        ints = {
            "turn_first": lambda p: p.turns[0], "turn_last": lambda p: p.turns[1], "start_char": lambda p: p.start_char,
            "end_char": lambda p: p.end_char, "part": lambda p: p.part,
        }
        nums = {f: np.array([ints[f](p) for p in passages], dtype=np.int64) for f in _INTS}
        for f in _FLOATS:
            nums[f] = np.array([np.nan if v is None else float(v) for v in (getattr(p, f) for p in passages)], dtype=np.float64)
        return cls(coded, text, nums, [p.chunk_id for p in passages])

    @classmethod
    def joined(cls, parts: Sequence[tuple[Any, int, int]]) -> "_Columns":
        """Rows ``a:b`` of each part (a ``_Columns`` or a ``PassageTable``), one after the other;
        coded values that no row uses any more are left out."""
        coded = {}
        for f in _CODED:
            at: dict[str, int] = {}
            codes = []
            for cols, a, b in parts:
                values, c = cols._coded[f] if isinstance(cols, PassageTable) else cols.coded[f]
                c = np.asarray(c[a:b])
                used = np.unique(c)
                remap = np.zeros(len(values), dtype=np.int32)
                remap[used] = [at.setdefault(values[int(u)], len(at)) for u in used]
                codes.append(remap[c])
            coded[f] = (list(at), np.concatenate(codes) if codes else np.zeros(0, dtype=np.int32))
        text = {}
        for f in _TEXT:
            datas, ats, base = [], [np.zeros(1, dtype=np.int64)], 0
            for cols, a, b in parts:
                data, at_ = cols._text[f] if isinstance(cols, PassageTable) else cols.text[f]
                datas.append(np.asarray(data[at_[a] : at_[b]]))
                ats.append(np.asarray(at_[a + 1 : b + 1]) - at_[a] + base)
                base += int(at_[b] - at_[a])
            text[f] = (np.concatenate(datas) if datas else np.zeros(0, dtype=np.uint8), np.concatenate(ats))
        nums = {}
        for f in _INTS + _FLOATS:
            got = [np.asarray((cols._nums if isinstance(cols, PassageTable) else cols.nums)[f][a:b]) for cols, a, b in parts]
            nums[f] = np.concatenate(got) if got else np.zeros(0, dtype=np.float64 if f in _FLOATS else np.int64)
        ids = [c for cols, a, b in parts for c in cols.chunk_ids[a:b]]
        return cls(coded, text, nums, ids)

    def write(self, path: Path) -> None:
        path.mkdir()
        for f in _CODED:
            values, codes = self.coded[f]
            (path / f"{f}.json").write_text(json.dumps(values, ensure_ascii=False), encoding="utf-8")
            _save(path / f"{f}.npy", np.asarray(codes, dtype=np.int32))
        for f in _TEXT:
            data, at = self.text[f]
            _save(path / f"{f}.npy", data)
            _save(path / f"{f}.at.npy", at)
        for f in _INTS:
            _save(path / f"{f}.npy", np.asarray(self.nums[f], dtype=np.int64))
        for f in _FLOATS:
            _save(path / f"{f}.npy", np.asarray(self.nums[f], dtype=np.float64))
        (path / "chunk_id.json").write_text(json.dumps(self.chunk_ids, ensure_ascii=False), encoding="utf-8")


def _save(path: Path, array: np.ndarray) -> None:
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)


def _load(path: Path) -> np.ndarray:
    """A memory-mapped array, as a plain ndarray view (numpy's memmap class makes every element
    access several times slower: 0.3 of the 1 s it took to make 8,000 passages)."""
    return np.load(path, mmap_mode="r", allow_pickle=False).view(np.ndarray)


# ---------------------------------------------------------------------------- manifest


def _manifest_json(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    # (a shallow dict per record: dataclasses.asdict deep-copies every list, 0.8 s at 800 transcripts)
    return [{**vars(info), "speakers": [vars(s) for s in info.speakers]} for info in manifest.values()]


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
    return _publish(settings, collection, view.index.fingerprint, lambda tmp: _write_content(tmp, collection, view))


def _publish(settings: Settings, collection: str, fingerprint: str, fill: Callable[[Path], None]) -> Path | None:
    """Make the snapshot of ``fingerprint`` whole or not at all: ``fill`` writes its files into a
    temporary folder, which is flushed and renamed into place; older snapshots of the collection
    are removed after. None when it was there already or cannot be written."""
    base = folder(settings)
    final = base / _name(collection, fingerprint)
    if _meta(final, collection, fingerprint) is not None:
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
        fill(tmp)
        _sync_folder(tmp)
        if final.exists():
            if _meta(final, collection, fingerprint) is not None:  # another process wrote it meanwhile
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
    from ._engine import term_counts

    index = view.index
    c = index.corpus
    df = view.df if view.df is not None else term_counts(index.passages)
    _write_files(tmp, collection, index.fingerprint, index.versions, _Columns.of(index.passages), index.vectors,
                 np.asarray(index.n_words, dtype=np.int64), (index.bm25, index.bm25_tf), (index.bm25_answer, index.bm25_answer_tf),
                 index._rows, c, view.idf, view.manifest, {"words": c.passage_words, "df": df})


def _write_files(tmp: Path, collection: str, fingerprint: str, versions: dict[str, str], columns: _Columns,
                 vectors: np.ndarray | None, n_words: np.ndarray, bm25: tuple[Any, np.ndarray], bm25_answer: tuple[Any, np.ndarray],
                 rows_by_key: dict[str, dict[str, np.ndarray]], corpus: Any, idf: dict[str, float], manifest: dict[str, Any],
                 counts: dict[str, dict[str, int]]) -> None:
    """Every file of a snapshot, ``meta.json`` last."""
    n = len(columns)
    columns.write(tmp / "passages")
    vectors = vectors if vectors is not None else np.zeros((n, 0), dtype=np.float16)
    _save(tmp / "vectors.npy", np.asarray(vectors, dtype=np.float16))
    _save(tmp / "n_words.npy", n_words)
    if n:
        for name, (bm, tf) in (("bm25", bm25), ("bm25_answer", bm25_answer)):
            bm.save(tmp / name, show_progress=False)
            _save(tmp / name / "tf.npy", np.asarray(tf, dtype=np.min_scalar_type(int(tf.max(initial=0)))))
    keys, rows, at = {}, [], [0]
    for key, groups in rows_by_key.items():
        keys[key] = list(groups)
        for v in groups.values():
            rows.append(v)
            at.append(at[-1] + len(v))
    (tmp / "rows.json").write_text(json.dumps({"keys": keys, "at": at}, ensure_ascii=False), encoding="utf-8")
    _save(tmp / "rows.npy", np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, dtype=np.int64))
    c = corpus
    entries = [[e.name, e.role, sorted(e.names), sorted(e.titles), e.phrases, sorted(e.heads), sorted(e.title_phrases),
                sorted(e.caps)] for e in c.speakers]
    data = {"words": sorted(c.words), "titles": c.titles, "people": {k: sorted(v) for k, v in c.people.items()},
            "vocab": sorted(bm25[0].vocab_dict) if n else [], "speakers": entries}
    (tmp / "corpus.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    (tmp / "idf.json").write_text(json.dumps(idf, ensure_ascii=False), encoding="utf-8")
    (tmp / "counts.json").write_text(json.dumps(counts, ensure_ascii=False), encoding="utf-8")
    (tmp / "manifest.json").write_text(json.dumps(_manifest_json(manifest), ensure_ascii=False), encoding="utf-8")
    sizes = {str(f.relative_to(tmp)): f.stat().st_size for f in sorted(tmp.rglob("*")) if f.is_file()}
    meta = {"format": FORMAT, "fingerprint": fingerprint, "collection": collection, "code": code_hash(),
            "passages": n, "versions": versions, "sizes": sizes, "written_at": time.time()}
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


def _newest(settings: Settings, collection: str) -> tuple[Path, dict[str, Any]] | None:
    """The newest usable snapshot of this collection, of whichever version of the store, and its
    meta.json."""
    try:
        found = [d for d in folder(settings).iterdir()
                 if d.name.startswith(collection + "-") and not _TMP.search(d.name) and d.is_dir()]
        found.sort(key=lambda d: d.stat().st_mtime, reverse=True)
    except OSError:
        return None
    for d in found:
        meta = _meta(d, collection, d.name[len(collection) + 1 :])
        if meta is not None:
            return d, meta
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
                             people={k: set(v) for k, v in c["people"].items()}, has_word=passages.has_word)
    bm25 = bm25_answer = None
    if n:
        bm25 = bm25s.BM25.load(path / "bm25", mmap=True, allow_pickle=False, show_progress=False)
        bm25_answer = bm25s.BM25.load(path / "bm25_answer", mmap=True, allow_pickle=False, show_progress=False)
    index = Index.restored(passages, speakers, dict(meta["versions"]), fingerprint, vectors if vectors.shape[1] else None,
                           bm25=bm25, bm25_answer=bm25_answer, n_words=_load(path / "n_words.npy"),
                           vocab=set(c["vocab"]), corpus=corpus, rows=rows, chunk_ids=passages.chunk_ids)
    idf = json.loads((path / "idf.json").read_text(encoding="utf-8"))
    return View(index, idf, manifest)


# ---------------------------------------------------------------------------- update


def update(settings: Settings, collection: str, store: Any, fingerprint: str) -> Path | None:
    """Write the snapshot of the store at ``fingerprint`` from the newest snapshot of an earlier
    version of it, doing for each part only what the changed transcripts need: the unchanged
    transcripts' passages, vectors and BM25 term counts are taken from it as they are (columns
    and arrays, no passage is made); only the added and changed transcripts are read from the
    store, tokenized and counted; the words and idf counts of the removed and changed ones are
    taken off. What depends on every passage (the BM25 weights, idf, the filter rows) is then
    recomputed from those counts and columns with numpy. The result is the snapshot a build from
    the store gives (tests/test_snapshot.py compares them).

    Returns its folder; None when there is no earlier snapshot, when less than half of the
    passages can be taken from it (a build from the store is then about as cheap), when the
    store changed while it was read, or when the snapshot cannot be written."""
    found = _newest(settings, collection)
    if found is None:
        return None
    path, meta = found
    manifest = store.manifest()
    versions = meta["versions"]
    old = PassageTable(path / "passages", int(meta["passages"]))
    ranges = _ranges(old)
    kept = {t: r for t, r in ranges.items()
            if t in manifest and versions.get(t) == manifest[t].version and r[1] - r[0] == manifest[t].n_passages}
    total = sum(info.n_passages for info in manifest.values())
    if not kept or 2 * sum(b - a for a, b in kept.values()) < total:
        return None
    new: dict[str, tuple[list[Passage], np.ndarray]] = {}
    for t in sorted(set(manifest) - set(kept)):
        passages, vectors = store.all_passages(t, with_vectors=True, manifest=manifest, vector_dtype=np.float16)
        if len(passages) != manifest[t].n_passages:
            return None  # caught between another ingest's writes: built from the store instead
        new[t] = (passages, vectors)
    if store.fingerprint() != fingerprint:
        return None
    removed = [old[i] for t, (a, b) in ranges.items() if t not in kept for i in range(a, b)]
    return _publish(settings, collection, fingerprint,
                    lambda tmp: _write_update(tmp, collection, fingerprint, path, old, kept, new, removed, manifest))


def _ranges(table: PassageTable) -> dict[str, tuple[int, int]]:
    """Each transcript's rows (passages are kept by transcript)."""
    values, codes = table._coded["transcript"]
    codes = np.asarray(codes)
    if not len(codes):
        return {}
    starts = np.concatenate([[0], np.flatnonzero(np.diff(codes)) + 1])
    ends = np.append(starts[1:], len(codes))
    return {values[int(codes[a])]: (int(a), int(b)) for a, b in zip(starts, ends)}


def _write_update(tmp: Path, collection: str, fingerprint: str, path: Path, old: PassageTable,
                  kept: dict[str, tuple[int, int]], new: dict[str, tuple[list[Passage], np.ndarray]],
                  removed: list[Passage], manifest: dict[str, Any]) -> None:
    import bm25s

    from ._engine import idf_table, term_counts
    from ._query import _speaker_entries, corpus_words, passage_words
    from ._retrieve import FILTER_KEYS, Lexicon, answer_tokens, filter_rows, full_tokens

    old_vectors, old_words = _load(path / "vectors.npy"), _load(path / "n_words.npy")
    to = np.full(len(old), -1, dtype=np.int64)  # old row -> new row
    parts: list[tuple[Any, int, int]] = []
    vectors, n_words, added, added_at = [], [], [], []
    n = 0
    for t in sorted(manifest):  # (Store.all_passages's order: by transcript)
        if t in kept:
            a, b = kept[t]
            to[a:b] = np.arange(n, n + b - a)
            parts.append((old, a, b))
            vectors.append(old_vectors[a:b])
            n_words.append(old_words[a:b])
        else:
            passages, v = new[t]
            a, b = 0, len(passages)
            parts.append((_Columns.of(passages), a, b))
            vectors.append(np.asarray(v, dtype=np.float16).reshape(b, -1) if b else np.zeros((0, old_vectors.shape[1]), np.float16))
            n_words.append(np.array([len(p.text.split()) for p in passages], dtype=np.int64))
            added += passages
            added_at += range(n, n + b)
        n += b - a
    columns = _Columns.joined(parts)
    bm25 = []
    for name, tokens in (("bm25", full_tokens), ("bm25_answer", answer_tokens)):
        stored = bm25s.BM25.load(path / name, mmap=True, allow_pickle=False, show_progress=False)
        terms: list[str] = []
        kept_counts = Lexicon.from_bm25(stored, _load(path / name / "tf.npy"), terms).moved(to, n)
        added_counts = Lexicon.of([tokens(p) for p in added], terms, at=np.asarray(added_at, dtype=np.int64), n_docs=n)
        bm25.append(Lexicon.joined([kept_counts, added_counts], n).bm25())
    counts = json.loads((path / "counts.json").read_text(encoding="utf-8"))
    words: dict[str, int] = counts["words"]
    df: dict[str, int] = counts["df"]
    _count(words, [w for p in removed for w in passage_words(p)], -1)
    _count(words, [w for p in added for w in passage_words(p)], 1)
    for sign, ps in ((-1, removed), (1, added)):
        for term, c in term_counts(ps).items():
            df[term] = df.get(term, 0) + sign * c
            if not df[term]:
                del df[term]
    speakers = [s for info in manifest.values() for s in info.speakers]
    role_of = {sp.name: sp.role for sp in speakers if sp.role}
    rows = filter_rows({k: columns.coded[k] for k in (*FILTER_KEYS, "question_speaker")}, role_of)
    titles: dict[str, str] = {}
    title_values, title_codes = columns.coded["title"]
    for t, r in rows["transcript"].items():
        titles[t] = title_values[int(title_codes[r[0]])]
    corpus = _CorpusParts(corpus_words(words, speakers), titles, _people(columns), _speaker_entries(speakers))
    _write_files(tmp, collection, fingerprint, {t: i.version for t, i in manifest.items()}, columns,
                 np.concatenate(vectors) if vectors else None, np.concatenate(n_words), bm25[0], bm25[1], rows, corpus,
                 idf_table(df, n), manifest, {"words": words, "df": df})


def _count(counts: dict[str, int], items: list[str], sign: int) -> None:
    for w in items:
        c = counts.get(w, 0) + sign
        if c:
            counts[w] = c
        else:
            del counts[w]


@dataclasses.dataclass
class _CorpusParts:
    """What the snapshot keeps of a ``_query.Corpus``."""

    words: set[str]
    titles: dict[str, str]
    people: dict[str, set[str]]
    speakers: list[Any]


def _people(columns: _Columns) -> dict[str, set[str]]:
    """Speaker name -> the transcripts they answer in (``Corpus.people``), speakers in the order
    they first answer."""
    names, who = columns.coded["speaker"]
    transcripts, where = columns.coded["transcript"]
    key = np.asarray(who, dtype=np.int64) * max(len(transcripts), 1) + np.asarray(where, dtype=np.int64)
    pairs, first = np.unique(key, return_index=True)
    out: dict[str, set[str]] = {}
    for k in pairs[np.argsort(first, kind="stable")]:
        name = names[int(k) // max(len(transcripts), 1)]
        if name:
            out.setdefault(name, set()).add(transcripts[int(k) % max(len(transcripts), 1)])
    return out
