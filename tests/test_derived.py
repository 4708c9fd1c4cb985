"""Sentence vectors built at ingest and stored with the passages (rag/_derived.py): a fresh engine
answers without embedding a sentence, the stored vectors are the ones the engine would embed, and
a SIGKILL at each step of an ingest's write leaves them consistent with the passages."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from rag import Engine, ingest, load_settings
from rag import _derived
from rag._store import Store

from conftest import ROOT, SEED

QUESTION = "What can we learn from Bangladesh?"


class _Counting:
    """The real embedder, counting the texts each call encodes."""

    def __init__(self, embedder):
        self._e = embedder
        self.calls: list[list[str]] = []

    def __getattr__(self, name):
        return getattr(self._e, name)

    def encode(self, texts, *args, **kwargs):
        self.calls.append(list(texts))
        return self._e.encode(texts, *args, **kwargs)


def _derived_consistent(settings, *, exact: bool) -> None:
    """Every current passage has its sentence record, with one row per quotable sentence;
    ``exact``: and there is no other record (after an ingest finished: stale ones repaired)."""
    store = Store(settings)
    manifest = store.manifest()
    passages, _ = store.all_passages(manifest=manifest)
    ids = [f"{p.chunk_id}@{manifest[p.transcript].version}" for p in passages]
    stored = store.sentence_vectors(ids)
    for p, cid in zip(passages, ids):
        assert cid in stored, f"{cid}: no stored sentence vectors"
        assert _derived.split_fields(p, stored[cid]) is not None, f"{cid}: wrong number of sentence vectors"
    assert store.count() >= len(passages)
    if exact:
        assert store._sentences.count() == len(passages) == store.count()


def test_fresh_engine_answers_without_embedding_a_sentence(seed_store, embedder):
    counting = _Counting(embedder)
    e = Engine(seed_store, embedder=counting)
    e.warm()
    assert e.sentences_ready(timeout=0)
    a = e.ask(QUESTION)
    assert not a.abstained and a.citations
    assert "Bangladesh" in a.citations[0].quote
    # the warm-up text and the question: one text per call, never a passage's sentences
    assert counting.calls and all(len(c) == 1 for c in counting.calls), counting.calls
    quotable = {s for p in e.index().passages for s in _derived.sentence_texts(p)}
    assert not quotable & {t for c in counting.calls for t in c}


def test_stored_vectors_are_the_embedded_ones_and_answers_match(seed_store, embedder):
    e = Engine(seed_store, embedder=embedder)
    stored = e.ask(QUESTION)
    index = e.index()
    ids = [f"{p.chunk_id}@{index.versions[p.transcript]}" for p in index.passages]
    got = e.store.sentence_vectors(ids)
    assert len(got) == len(index)
    for p, cid in zip(index.passages, ids):
        texts = _derived.sentence_texts(p)
        if texts:
            fresh = embedder.encode(texts)
            cos = np.sum(fresh * got[cid], axis=1) / np.linalg.norm(got[cid], axis=1)
            assert cos.min() > 0.9995  # float16 storage of the same vectors
    # a store whose records are gone: the engine embeds on demand and answers the same
    e.store._sentences.delete(ids=ids)
    fresh_engine = Engine(seed_store, embedder=embedder)
    again = fresh_engine.ask(QUESTION)
    assert again.text == stored.text
    assert again.evidence == pytest.approx(stored.evidence, abs=2e-3)
    # put them back for the other tests sharing the seed store
    _derived.write(e.store._sentences, ids, index.passages, [index.versions[p.transcript] for p in index.passages],
                   _derived.encode_sentences(index.passages, embedder.encode))


def test_adding_a_transcript_writes_only_its_sentences(tmp_path, embedder):
    s = load_settings(store=tmp_path / "store")
    src = tmp_path / "in"
    src.mkdir()
    (src / "a.txt").write_text(SEED.read_text(encoding="utf-8"), encoding="utf-8")
    counting = _Counting(embedder)
    ingest([src], s, embedder=counting)
    first = sum(len(c) for c in counting.calls)
    counting.calls.clear()
    (src / "b.txt").write_text("Interviewer: What do you do on weekends?\n\nGuest: I walk in the hills. "
                               "Then I read long history books at home.\n", encoding="utf-8")
    ingest([src], s, embedder=counting)
    encoded = [t for c in counting.calls for t in c]
    assert first > 20 and 0 < len(encoded) <= 4, encoded  # b's passage and its sentences only
    _derived_consistent(s, exact=True)
    # a new version of b: its old sentence vectors go with its old passages
    (src / "b.txt").write_text("Interviewer: What do you do on weekends?\n\nGuest: I swim in the lake. "
                               "Then I cook a long dinner for friends.\n", encoding="utf-8")
    ingest([src], s, embedder=counting)
    _derived_consistent(s, exact=True)


# ---------------------------------------------------------------------------- crashes

# Each point kills the ingesting process (SIGKILL, as the OOM killer or a power cut would) at one
# step of writing a transcript's new version.
_KILLS = {
    # sentence vectors written, passages not yet
    "after_sentences": textwrap.dedent("""
        real_write = _derived.write
        def write(*a, **k):
            real_write(*a, **k)
            die()
        _derived.write = write
    """),
    # sentence vectors and passages written, the manifest not yet switched
    "before_switch": textwrap.dedent("""
        real_write = _store.Store.write_transcripts
        def write_transcripts(self, items):
            self._manifest.upsert = lambda *a, **k: die()
            real_write(self, items)
        _store.Store.write_transcripts = write_transcripts
    """),
    # switched; the old version's passages dropped, its sentence vectors not yet
    "between_drops": textwrap.dedent("""
        def drop_stale(self, transcript, version):
            self._passages.delete(where={"$and": [{"transcript": transcript}, {"version": {"$ne": version}}]})
            die()
        _store.Store.drop_stale = drop_stale
    """),
}

_DRIVER = """
import os, signal, sys
from rag import _derived, _snapshot, _store, ingest, load_settings
def die():
    os.kill(os.getpid(), signal.SIGKILL)
{patch}
ingest([sys.argv[1]], load_settings(store=sys.argv[2]))
"""


@pytest.mark.parametrize("point", sorted(_KILLS))
def test_sigkill_during_ingest_leaves_sentence_vectors_consistent(point, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    seed = SEED.read_text(encoding="utf-8")
    (src / "seed.txt").write_text(seed, encoding="utf-8")
    store_dir = tmp_path / "store"
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    s = load_settings(store=store_dir)

    def run(patch: str) -> subprocess.CompletedProcess:
        code = _DRIVER.format(patch=patch)
        return subprocess.run([sys.executable, "-c", code, str(src), str(store_dir)], env=env,
                              capture_output=True, text=True, timeout=600)

    assert run("").returncode == 0
    before = Store(s).manifest()["seed.txt"].version
    # a new version of the file, killed part-way through writing it
    (src / "seed.txt").write_text(seed + "\n\nInterviewer: One last thing?\n\nAmar Shah: We must keep "
                                  "learning from every country we work with.\n", encoding="utf-8")
    killed = run(_KILLS[point])
    assert killed.returncode == -9, killed.stderr
    _derived_consistent(s, exact=False)  # whichever version the manifest names is whole
    version = Store(s).manifest()["seed.txt"].version
    assert (version == before) == (point != "between_drops")
    # a fresh engine answers from it without embedding any sentence
    e = Engine(s)
    e.warm()
    a = e.ask(QUESTION)
    assert not a.abstained and "Bangladesh" in a.citations[0].quote
    # the next ingest finishes the job: new version, nothing stale left
    done = run("")
    assert done.returncode == 0, done.stderr
    _derived_consistent(s, exact=True)
    assert Store(s).manifest()["seed.txt"].version != before


def test_pooled_sentence_vectors_come_from_the_passage_pass(tmp_path, embedder):
    """sentence_vectors = "pooled": one forward pass per passage gives its vector and its
    sentences' vectors; only sentences not in the embedded text (a shortened question) are
    encoded on their own."""
    s = load_settings(store=tmp_path / "store", sentence_vectors="pooled")
    counting = _Counting(embedder)
    report = ingest([SEED], s, embedder=counting)
    assert not report.failed
    n = report.files[0].passages
    _derived_consistent(s, exact=True)
    store = Store(s)
    passages, vectors = store.all_passages(with_vectors=True)
    manifest = store.manifest()
    alone = {t for p in passages for t, sp in zip(_derived.sentence_texts(p), _derived.embed_spans(p)) if sp is None}
    assert sum(len(c) for c in counting.calls) == len(alone)  # the passages went through encode_spans
    # the passage vectors are the ones plain encoding gives
    plain = embedder.encode([p.embed_text for p in passages])
    assert float(np.min(np.sum(plain * vectors, axis=1))) > 0.9999 and len(passages) == n
    # a pooled sentence vector is the mean of the passage's token states over the sentence, which
    # an independent pooling of the same pass reproduces
    p = next(p for p in passages if len(_answer_sentences(p)) >= 2)
    spans = _derived.embed_spans(p)
    _, pooled = embedder.model.encode_spans([p.embed_text], [[sp or (0, 0) for sp in spans]])
    stored = store.sentence_vectors([f"{p.chunk_id}@{manifest[p.transcript].version}"])
    got = next(iter(stored.values()))
    for row, v in zip(got, pooled[0]):
        if v is not None:
            assert float(row @ v) > 0.999
    e = Engine(s, embedder=embedder)
    a = e.ask(QUESTION)
    assert not a.abstained and "Bangladesh" in a.citations[0].quote


def _answer_sentences(p):
    from rag import _answer

    return _answer.passage_sentences(p, "text")
