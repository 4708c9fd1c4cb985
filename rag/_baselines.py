"""Baselines for `rag eval --baseline`: what a reader would build in an afternoon, run on the same
transcripts and questions as the engine, so the numbers sit side by side.

* ``naive``: the textbook LangChain pipeline. RecursiveCharacterTextSplitter (1000 characters,
  200 overlap, ``add_start_index`` so each chunk's place in the transcript is known),
  HuggingFaceEmbeddings on the same bundled MiniLM folder (normalised), a Chroma collection in
  a temporary folder, dense top-k by ``similarity_search_with_score``.
* ``bm25``: BM25 alone (bm25s, English stop words, Snowball stemmer) over the same chunks.

Neither knows speakers, questions or conversations: a follow-up is searched as typed, and only
the ``transcript`` filter is honoured. A chunk counts as correct when its range
``[start, start + len)`` overlaps a gold range, exactly as for the engine's passages.

LangChain and its integrations are imported inside the functions: they are an optional extra
(``pip install -e .[baselines]``) and nothing else in the package needs them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ._errors import ConfigError

CHUNK_SIZE = 1000
CHUNK_OVERLAP = 200
NAMES = ("naive", "bm25")

DESCRIPTIONS = {
    "naive": "LangChain: RecursiveCharacterTextSplitter 1000/200, HuggingFaceEmbeddings (same MiniLM), Chroma, dense top-k",
    "bm25": "BM25 alone (bm25s, stemmed, English stop words) on the same 1000/200 chunks",
}


@dataclass
class Chunk:
    chunk_id: str
    transcript: str
    start_char: int
    end_char: int
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"chunk_id": self.chunk_id, "transcript": self.transcript, "start_char": self.start_char, "end_char": self.end_char}


def _missing(exc: ImportError) -> ConfigError:
    return ConfigError(
        f"the baselines need LangChain's integrations ({exc.name or exc} is not installed)",
        "Install them with `pip install -e .[baselines]` (langchain-text-splitters, langchain-chroma, langchain-huggingface).",
    )


def split_chunks(texts: dict[str, str], chunk_size: int = CHUNK_SIZE, chunk_overlap: int = CHUNK_OVERLAP) -> list[Chunk]:
    """Split every transcript with RecursiveCharacterTextSplitter; offsets into the given texts."""
    try:
        from langchain_text_splitters import RecursiveCharacterTextSplitter
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise _missing(exc) from None

    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap, add_start_index=True)
    chunks: list[Chunk] = []
    for tid in sorted(texts):
        text = texts[tid]
        docs = splitter.create_documents([text], metadatas=[{"transcript": tid}])
        for doc in docs:
            start = int(doc.metadata.get("start_index", -1))
            body = doc.page_content
            if start < 0 or text[start : start + len(body)] != body:  # never expected; be exact anyway
                start = text.find(body)
            if start < 0:
                continue
            chunks.append(Chunk(f"{tid}@{start}", tid, start, start + len(body), body))
    return chunks


class _Baseline:
    name = ""

    def __init__(self, chunks: list[Chunk]) -> None:
        self.chunks = chunks
        self.build_seconds = 0.0

    def search(self, question: str, k: int, transcript: str | Sequence[str] | None = None) -> list[tuple[Chunk, float]]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class NaiveBaseline(_Baseline):
    """RecursiveCharacterTextSplitter chunks in a throwaway Chroma collection, dense search."""

    name = "naive"

    def __init__(self, chunks: list[Chunk], model_path: str, *, batch_size: int = 64) -> None:
        super().__init__(chunks)
        t0 = time.perf_counter()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            import chromadb.config
            from langchain_chroma import Chroma
            from langchain_core.documents import Document
            from langchain_huggingface import HuggingFaceEmbeddings
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise _missing(exc) from None

        self._dir = tempfile.mkdtemp(prefix="rag-naive-")
        self._by_id = {c.chunk_id: c for c in chunks}
        embeddings = HuggingFaceEmbeddings(
            model_name=model_path,
            model_kwargs={"device": "cpu"},
            encode_kwargs={"normalize_embeddings": True, "batch_size": batch_size},
        )
        self.store = Chroma(
            collection_name="naive_baseline",
            embedding_function=embeddings,
            persist_directory=self._dir,
            client_settings=chromadb.config.Settings(anonymized_telemetry=False),
        )
        docs = [Document(page_content=c.text, metadata={"transcript": c.transcript, "start_index": c.start_char}) for c in chunks]
        ids = [c.chunk_id for c in chunks]
        for i in range(0, len(docs), 1000):
            self.store.add_documents(docs[i : i + 1000], ids=ids[i : i + 1000])
        self.build_seconds = time.perf_counter() - t0

    def search(self, question: str, k: int, transcript: str | Sequence[str] | None = None) -> list[tuple[Chunk, float]]:
        flt = None
        if transcript:
            ts = [transcript] if isinstance(transcript, str) else list(transcript)
            flt = {"transcript": ts[0]} if len(ts) == 1 else {"transcript": {"$in": ts}}
        k = max(1, min(k, len(self.chunks)))
        out = []
        for doc, dist in self.store.similarity_search_with_score(question, k=k, filter=flt):
            tid = doc.metadata["transcript"]
            chunk = self._by_id.get(f"{tid}@{int(doc.metadata['start_index'])}")
            if chunk is not None:
                out.append((chunk, float(dist)))
        return out

    def close(self) -> None:
        close = getattr(getattr(self.store, "_client", None), "close", None)
        if callable(close):  # chromadb >= 1.1: release this folder's system only, not the engine's
            try:
                close()
            except Exception:
                pass
        shutil.rmtree(self._dir, ignore_errors=True)


class BM25Baseline(_Baseline):
    """BM25 (bm25s, Lucene variant) over the same chunks."""

    name = "bm25"

    def __init__(self, chunks: list[Chunk]) -> None:
        super().__init__(chunks)
        t0 = time.perf_counter()
        import bm25s
        import Stemmer

        self._bm25s = bm25s
        self._stemmer = Stemmer.Stemmer("english")
        tokens = bm25s.tokenize([c.text for c in chunks], stopwords="en", stemmer=self._stemmer, show_progress=False)
        self.retriever = bm25s.BM25()
        self.retriever.index(tokens, show_progress=False)
        self._vocab = tokens.vocab
        self.build_seconds = time.perf_counter() - t0

    def search(self, question: str, k: int, transcript: str | Sequence[str] | None = None) -> list[tuple[Chunk, float]]:
        import numpy as np

        toks = self._bm25s.tokenize([question], stopwords="en", stemmer=self._stemmer, return_ids=False, show_progress=False)[0]
        ids = [self._vocab[t] for t in toks if t in self._vocab]
        if not ids:
            return []
        scores = np.asarray(self.retriever.get_scores(ids), dtype=np.float64)
        if transcript:
            ts = {transcript} if isinstance(transcript, str) else set(transcript)
            scores = np.where([c.transcript in ts for c in self.chunks], scores, 0.0)
        order = np.argsort(-scores, kind="stable")[:k]
        return [(self.chunks[i], float(scores[i])) for i in order if scores[i] > 0]


def build(name: str, chunks: list[Chunk], *, model_path: str | None = None, batch_size: int = 64) -> _Baseline:
    if name == "naive":
        if model_path is None:
            raise ValueError("the naive baseline needs the embedding model's folder")
        return NaiveBaseline(chunks, model_path, batch_size=batch_size)
    if name == "bm25":
        return BM25Baseline(chunks)
    raise ValueError(f"unknown baseline {name!r}; known: {', '.join(NAMES)}")


def run(
    name: str,
    texts: dict[str, str],
    questions: list[dict[str, Any]],
    *,
    k: int,
    model_path: str | None = None,
    depth: int = 10,
    on_question: Callable[[], None] | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> tuple[list[list[Chunk]], list[float], dict[str, Any]]:
    """Run one baseline over ``questions`` (dicts with ``question`` and optional ``filters``).
    Returns the ranked chunks per question (``max(k, depth)`` deep), the search latency of each
    (ms) and a description of the run."""
    stage = on_stage or (lambda what: None)
    stage("indexing")
    chunks = split_chunks(texts)
    ranked: list[list[Chunk]] = []
    latencies: list[float] = []
    with build(name, chunks, model_path=model_path) as base:
        stage("searching")
        for q in questions:
            transcript = (q.get("filters") or {}).get("transcript")
            t0 = time.perf_counter()
            hits = base.search(q["question"], max(k, depth), transcript)
            latencies.append((time.perf_counter() - t0) * 1000)
            ranked.append([c for c, _ in hits])
            if on_question:
                on_question()
        info = {
            "description": DESCRIPTIONS[name],
            "chunks": len(chunks),
            "transcripts": sorted(texts),
            "build_seconds": round(base.build_seconds, 2),
        }
    return ranked, latencies, info
