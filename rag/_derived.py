"""Data derived from the passages at ingest and stored beside them, so that no process that opens
the store computes it again: the vectors of each passage's quotable sentences (what the answer
step scores sentences with).

Where: a third Chroma collection, ``s_<model>_c<N>`` (the passages' collection name with ``s``
for ``p``), one record per passage with the passage's id (``<chunk_id>@<version>``), its
transcript and version as metadata (so that the same deletions as for the passages apply), and
the sentence vectors in metadata ``v``: float16, the answer's sentences then the question's (in
``_answer.passage_sentences`` order), base64. The record's embedding is one number (Chroma needs
one; nothing searches it). Chroma is the home so that embedded and server mode work the same:
several app processes on several machines read the same records and none embeds sentences.

Crash safety follows the passages' rule (``rag/_store.py``): a transcript's sentence records are
written after its passages and before its manifest record points at the new version, and stale
versions are dropped after; readers ask only for the ids of the versions the manifest names, and
``repair`` removes records of other versions. A passage without a record (a record lost, or a
store written otherwise) is not an error: the engine embeds its sentences on demand, as before.
"""

from __future__ import annotations

import base64
import zlib
from typing import Any, Callable, Sequence

import numpy as np

from . import _answer
from ._records import Passage

KEY = "v"  # metadata key of the packed vectors
_BATCH = 500  # records per write (a record holds a few kilobytes)


def collection_name(passages_name: str) -> str:
    """``p_<model>_c<N>`` -> ``s_<model>_c<N>``."""
    return "s" + passages_name[1:]


def sentence_texts(p: Passage) -> list[str]:
    """The passage's quotable sentences, answer first, then question: the rows of its record."""
    return [getattr(p, f)[a:b] for f in _answer.FIELDS for a, b in _answer.passage_sentences(p, f)]


def encode_sentences(passages: Sequence[Passage], encode: Callable[[list[str]], np.ndarray]) -> list[np.ndarray]:
    """Each passage's sentence vectors (float32, rows as ``sentence_texts``), each distinct
    sentence encoded once (the parts of a split answer share their question)."""
    per = [sentence_texts(p) for p in passages]
    distinct = list(dict.fromkeys(s for ss in per for s in ss))
    if not distinct:
        return [np.zeros((0, 0), dtype=np.float32) for _ in passages]
    vecs = encode(distinct)
    row = {s: i for i, s in enumerate(distinct)}
    return [vecs[[row[s] for s in ss]] if ss else np.zeros((0, vecs.shape[1]), dtype=np.float32) for ss in per]


def pack(matrix: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(matrix, dtype=np.float16).tobytes()).decode("ascii")


def unpack(text: str, dimension: int) -> np.ndarray:
    raw = np.frombuffer(base64.b64decode(text), dtype=np.float16)
    return raw.reshape(-1, dimension).astype(np.float32) if dimension else raw.reshape(0, 0).astype(np.float32)


def split_fields(p: Passage, matrix: np.ndarray) -> dict[str, np.ndarray] | None:
    """A stored matrix as {field: rows}; None when its row count does not fit the passage (then
    the caller embeds the sentences itself)."""
    counts = [len(_answer.passage_sentences(p, f)) for f in _answer.FIELDS]
    if len(matrix) != sum(counts):
        return None
    out, at = {}, 0
    for f, n in zip(_answer.FIELDS, counts):
        out[f] = matrix[at : at + n]
        at += n
    return out


def records(ids: Sequence[str], passages: Sequence[Passage], versions: Sequence[str],
            matrices: Sequence[np.ndarray]) -> tuple[list[list[float]], list[dict[str, Any]]]:
    """Embeddings and metadatas of sentence records (embedding: one distinct number per id, as
    an HNSW index of identical points builds slower)."""
    embs = [[point(i)] for i in ids]
    metas = [{"transcript": p.transcript, "version": v, "n": int(len(m)), "d": int(m.shape[1]) if m.ndim == 2 else 0,
              KEY: pack(m)} for p, v, m in zip(passages, versions, matrices)]
    return embs, metas


def point(cid: str) -> float:
    """The one-number embedding of a sentence record."""
    return zlib.crc32(cid.encode()) / 2**32


def write(collection: Any, ids: Sequence[str], passages: Sequence[Passage], versions: Sequence[str],
          matrices: Sequence[np.ndarray]) -> None:
    for at in range(0, len(ids), _BATCH):
        sl = slice(at, at + _BATCH)
        embs, metas = records(ids[sl], passages[sl], versions[sl], matrices[sl])
        collection.upsert(ids=list(ids[sl]), embeddings=embs, metadatas=metas)


def read(collection: Any, ids: Sequence[str]) -> dict[str, np.ndarray]:
    """Stored sentence matrices (float32) by passage id; ids without a record are left out."""
    out: dict[str, np.ndarray] = {}
    for at in range(0, len(ids), 1000):
        got = collection.get(ids=list(ids[at : at + 1000]), include=["metadatas"])
        for cid, md in zip(got["ids"], got["metadatas"]):
            if md and isinstance(md.get(KEY), str):
                try:
                    out[cid] = unpack(md[KEY], int(md.get("d", 0)))
                except ValueError:  # a damaged record: the engine embeds instead
                    continue
    return out


# ---------------------------------------------------------------------------- pooled (one pass)

def embed_spans(p: Passage) -> list[tuple[int, int] | None]:
    """Where each of the passage's quotable sentences (rows as ``sentence_texts``) stands in its
    ``embed_text``; None for a question sentence the embedded (shortened) question leaves out."""
    qs, eq, sp = p.question_speaker, p.embed_question, p.speaker
    asked = (f"{qs}: {eq}" if qs else eq) if eq else ""
    t_at = (len(asked) + 1 if asked else 0) + (len(sp) + 2 if sp else 0)
    q_at = len(qs) + 2 if qs else 0
    out: list[tuple[int, int] | None] = [(t_at + a, t_at + b) for a, b in _answer.passage_sentences(p, "text")]
    for a, b in _answer.passage_sentences(p, "question"):
        if not eq:
            out.append(None)
        elif eq == p.question:
            out.append((q_at + a, q_at + b))
        else:
            at = eq.find(p.question[a:b])
            out.append((q_at + at, q_at + at + b - a) if at >= 0 else None)
    return out


def encode_pooled(passages: Sequence[Passage], embedder: Any, batch_size: int,
                  progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """Passage vectors and sentence vectors from one forward pass of each passage's
    ``embed_text`` (``Embedder.encode_spans``): a sentence's vector is the mean of the passage's
    final hidden states over that sentence's tokens. Sentences with no tokens there (cut from a
    shortened question, or truncated) are encoded on their own, each distinct one once. None
    when the model cannot pool (not run on rag._bert)."""
    spans = [embed_spans(p) for p in passages]
    got = embedder.encode_spans([p.embed_text for p in passages], [[s or (0, 0) for s in sp] for sp in spans],
                                batch_size=batch_size, progress=progress)
    if got is None:
        return None
    vectors, pooled = got
    texts = [sentence_texts(p) for p in passages]
    alone = list(dict.fromkeys(t for ts, vs in zip(texts, pooled) for t, v in zip(ts, vs) if v is None))
    extra = embedder.encode(alone, batch_size=batch_size) if alone else np.zeros((0, vectors.shape[1]), dtype=np.float32)
    row = {t: i for i, t in enumerate(alone)}
    dim = vectors.shape[1]
    mats = [np.array([v if v is not None else extra[row[t]] for t, v in zip(ts, vs)], dtype=np.float32).reshape(len(ts), dim)
            for ts, vs in zip(texts, pooled)]
    return vectors, mats
