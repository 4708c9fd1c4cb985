"""The query-time snapshot (rag/_snapshot.py): written at ingest, read by every later process
instead of rebuilding the view from Chroma, with the very same answers; never used when it does
not match the store; never unpickled; a SIGKILL while it is written leaves the store usable."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from rag import Engine, ingest, load_settings
from rag import _snapshot
from rag._engine import _idf
from rag._store import Store, collection_names

from conftest import CORPUS, DEV, ROOT, SEED

HEARING = DEV / "transcripts" / "education_10.txt"  # the smallest development hearing: many speakers

QUESTIONS = [
    ("What can we learn from Bangladesh?", None),
    ("What did Amar Shah say about quality improvement?", None),
    ("What did the interviewer ask about the NHS?", None),
    ("Who is Amar Shah?", None),
    ("What did he say about France?", None),
    ("What about the waiting lists?", {"speaker": "Amar Shah"}),
    ("What is the role of leadership?", {"role": "interviewee"}),
    ("What did the minister say about teachers' pay?", None),
    ("What about schools?", {"transcript": "education_10.txt"}),
]


def _snapshots(settings) -> list[Path]:
    base = _snapshot.folder(settings)
    return sorted(base.iterdir()) if base.is_dir() else []


def _answers(engine: Engine) -> list[tuple]:
    out = []
    for q, filters in QUESTIONS:
        a = engine.ask(q, filters=filters)
        out.append((q, a.text, a.abstained, [(r.passage.chunk_id, round(r.score, 6)) for r in a.retrieved],
                    [(c.passage.chunk_id, c.quote, c.speaker) for c in a.citations]))
    # a follow-up, with the first answer as history
    first = engine.ask(QUESTIONS[0][0])
    a = engine.ask("And Uganda?", history=[first])
    out.append(("follow-up", a.text, [r.passage.chunk_id for r in a.retrieved]))
    return out


@pytest.fixture(scope="module")
def two_stores(tmp_path_factory, embedder):
    """The demo corpus and a committee hearing, ingested (so with its snapshot), and the same
    store's settings with the snapshot switched off."""
    src = tmp_path_factory.mktemp("in")
    shutil.copytree(CORPUS, src / "corpus")
    shutil.copy(HEARING, src / HEARING.name)
    s = load_settings(store=tmp_path_factory.mktemp("snap") / "store")
    report = ingest([src], s, embedder=embedder)
    assert not report.failed, report.failed
    return s, s.model_copy(update={"snapshot": False})


def test_ingest_writes_the_snapshot_and_a_fresh_engine_reads_it(two_stores, embedder, monkeypatch):
    s, _ = two_stores
    snaps = _snapshots(s)
    fp = Store(s).fingerprint()
    assert [p.name for p in snaps] == [f"{collection_names(s.model)[0]}-{fp}"]

    def no_reading(*a, **k):
        raise AssertionError("the view was built from Chroma although the snapshot is there")

    monkeypatch.setattr(Store, "all_passages", no_reading)
    e = Engine(s, embedder=embedder)
    assert isinstance(e.index().passages, _snapshot.PassageTable)
    a = e.ask(QUESTIONS[0][0])
    assert not a.abstained and "Bangladesh" in a.citations[0].quote


def test_words_used_in_lower_case_are_found_in_the_mapped_texts_as_in_the_passages(two_stores, embedder, tmp_path):
    """Whether a speaker's name word is written in lower case ("young people" is no Kate Young) is
    looked up in the snapshot's memory-mapped bytes, without decoding or joining the texts; the
    answer is the one a Corpus made from the passages gives, word by word."""
    from rag._query import Corpus

    s, plain = two_stores
    restored, built = Engine(s, embedder=embedder).index(), Engine(plain, embedder=embedder).index()
    assert isinstance(restored.passages, _snapshot.PassageTable) and isinstance(built.passages, list)
    fresh = Corpus(list(built.passages), [])
    vocab = sorted({w for p in built.passages for w in p.text.replace("’", " ").split() if w.isalpha()})
    words = vocab[::7] + [w.lower() for w in vocab[::11]] + ["bangladesh", "Bangladesh", "zzz", "’"]
    assert len(words) > 200
    for w in words:
        assert restored.corpus._has_word(w) == fresh._has_word(w), w


def test_a_word_is_not_found_across_two_texts(tmp_path, embedder):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "t.txt").write_text("Q: Where did you play?\n\nA: We climbed the old tree\n\n"
                                           "Q: And the rules?\n\nA: house rules apply to everyone\n", encoding="utf-8")
    s = load_settings(store=tmp_path / "store")
    assert not ingest([tmp_path / "in"], s, embedder=embedder).failed
    index = Engine(s, embedder=embedder).index()
    assert isinstance(index.passages, _snapshot.PassageTable)
    texts = [index.passages.text("text", i) for i in range(len(index.passages))]
    assert texts == ["We climbed the old tree", "house rules apply to everyone"]  # stored back to back
    assert index.corpus._has_word("tree") and index.corpus._has_word("house")
    assert not index.corpus._has_word("treehouse") and not index.corpus._has_word("ehou")


def _same_view(restored: Engine, built: Engine) -> None:
    """Every part of the two engines' views is the same."""
    b, r = built.index(), restored.index()
    assert list(r.passages) == b.passages
    assert r.passages[-1] == b.passages[-1] and r.passages[1:3] == b.passages[1:3]
    assert np.array_equal(np.asarray(r.vectors), b.vectors) and r.vectors.dtype == b.vectors.dtype
    assert r.by_chunk == b.by_chunk and [r.base_of[i] for i in range(len(b))] == b.base_of
    assert list(r.n_words) == b.n_words and r.vocab == b.vocab and r.versions == b.versions
    assert r.role_of == b.role_of and r.fingerprint == b.fingerprint
    assert {k: {v: list(rows) for v, rows in g.items()} for k, g in r._rows.items()} == \
        {k: {v: list(rows) for v, rows in g.items()} for k, g in b._rows.items()}
    assert r.corpus.words == b.corpus.words and r.corpus.titles == b.corpus.titles and r.corpus.people == b.corpus.people
    assert r.corpus.speakers == b.corpus.speakers and r.corpus._by_word == b.corpus._by_word
    assert r.corpus._speakers == b.corpus._speakers
    assert [r.passages.text("text", i) for i in range(len(b))] == [p.text for p in b.passages]  # what has_word searches
    # a word is found in the same texts (words at a text's very start and end included)
    sample = {w for p in b.passages[:40] for w in (p.text.split() or [""])[:1] + (p.text.split() or [""])[-1:]}
    sample |= {"bangladesh", "learn", "nowhere-at-all", "t", "-", "of"}
    assert {w: r.corpus._used_as_word(w) for w in sample} == {w: b.corpus._used_as_word(w) for w in sample}
    assert any(b.corpus._used_as_word(w) for w in sample) and not all(b.corpus._used_as_word(w) for w in sample)
    assert restored._idf == built._idf == _idf(b.passages)
    assert restored._manifest == built._manifest
    for tokens in (["bangladesh"], ["nhs", "qualiti", "improv"], ["learn", "countri"], ["school", "teacher"]):
        assert np.array_equal(r.bm25.get_scores(tokens), b.bm25.get_scores(tokens))
        assert np.array_equal(r.bm25_answer.get_scores(tokens), b.bm25_answer.get_scores(tokens))


def test_same_view_and_same_answers_with_and_without_the_snapshot(two_stores, embedder):
    s, off = two_stores
    built, restored = Engine(off, embedder=embedder), Engine(s, embedder=embedder)
    b, r = built.index(), restored.index()
    assert isinstance(r.passages, _snapshot.PassageTable) and isinstance(b.passages, list)
    _same_view(restored, built)
    # what applications read
    for t in [None, *built.transcripts()]:
        assert restored.passages(t) == built.passages(t)
        assert restored.speakers(t) == built.speakers(t) and restored.roles(t) == built.roles(t)
    # the old way of listing everyone, from every passage
    assert built.speakers() == sorted({x for p in b.passages for x in (p.speaker, p.question_speaker) if x}, key=str.lower)
    assert _answers(restored) == _answers(built)


def test_a_snapshot_of_another_store_version_is_not_used_but_its_unchanged_transcripts_are(tmp_path, embedder, copy_seed, monkeypatch):
    src = copy_seed("a.txt")
    shutil.copy(HEARING, src.parent / HEARING.name)
    s = load_settings(store=tmp_path / "store")
    ingest([src.parent], s, embedder=embedder)
    old = _snapshots(s)
    assert len(old) == 1
    # a third transcript: a new snapshot under the new fingerprint, the old one removed; the
    # unchanged transcripts' passages are taken from the old snapshot, only the new one is read
    shutil.copy(CORPUS / "nhs-impact-amar-shah-interview.txt", src.parent / "b.txt")  # (front matter: other speakers' names)
    read, real = [], Store.all_passages

    def reading(self, transcript=None, *a, **k):
        read.append(transcript)
        return real(self, transcript, *a, **k)

    monkeypatch.setattr(Store, "all_passages", reading)
    ingest([src.parent], s, embedder=embedder)
    assert read == ["b.txt"]
    # one changed (read again), one removed (left out)
    read.clear()
    with open(src, "a", encoding="utf-8") as fh:
        fh.write("\nPP: And one more thing?\n\nAS: We keep learning from each other.\n")
    (src.parent / "b.txt").rename(tmp_path / "b.txt")
    ingest([src.parent], s, embedder=embedder, prune=True)
    monkeypatch.setattr(Store, "all_passages", real)
    assert read == ["a.txt"]
    assert sorted(Store(s).manifest()) == sorted(["a.txt", HEARING.name])
    new = _snapshots(s)
    assert len(new) == 1 and new != old
    e = Engine(s, embedder=embedder)
    assert isinstance(e.index().passages, _snapshot.PassageTable)
    _same_view(e, Engine(s.model_copy(update={"snapshot": False}), embedder=embedder))
    # the old snapshot put under the new name (its meta.json says which store version it is of)
    meta_old = json.loads((new[0] / "meta.json").read_text())
    meta_old["fingerprint"] = "0" * 40
    (new[0] / "meta.json").write_text(json.dumps(meta_old))
    assert _snapshot.read(s, collection_names(s.model)[0], e.index().fingerprint) is None
    e2 = Engine(s, embedder=embedder)
    assert isinstance(e2.index().passages, list)  # built from the store, not from the mislabelled snapshot
    assert len(e2.index()) == len(e.index())


def test_bm25_from_counts_scores_as_bm25s_indexes(two_stores):
    """The BM25 matrix made from term counts (``Lexicon.bm25``, what an update recomputes) gives
    bm25s's own scores to the bit, for every term of both indexes; made again from the counts it
    stores, it is the same matrix."""
    import bm25s

    from rag._retrieve import Lexicon, answer_tokens, full_tokens

    s, _ = two_stores
    passages, _ = Store(s).all_passages()
    for tokens in (full_tokens, answer_tokens):
        docs = [tokens(p) for p in passages]
        ref = bm25s.BM25(k1=1.2, b=0.75)
        ref.index(docs, show_progress=False)
        mine, tf = Lexicon.of(docs).bm25()
        assert set(mine.vocab_dict) == set(ref.vocab_dict) - {""}
        for term in mine.vocab_dict:
            assert np.array_equal(mine.get_scores([term]), ref.get_scores([term])), term
        some = sorted(mine.vocab_dict)[::7][:40]
        assert np.array_equal(mine.get_scores(some), ref.get_scores(some))
        again, tf2 = Lexicon.from_bm25(mine, tf).bm25()
        assert all(np.array_equal(again.scores[k], mine.scores[k]) for k in ("data", "indices", "indptr"))
        assert np.array_equal(tf, tf2) and again.vocab_dict == mine.vocab_dict


def test_filter_rows_as_defined_per_passage(two_stores):
    """``filter_rows`` (numpy, from coded columns) against its definition passage by passage: a
    passage is in the rows of its own value, and of its asker (speaker) or its asker's role when
    that differs; values in the order they first occur."""
    from rag._retrieve import FILTER_KEYS, _codes, filter_rows

    s, _ = two_stores
    store = Store(s)
    passages, _ = store.all_passages()
    role_of = {sp.name: sp.role for info in store.manifest().values() for sp in info.speakers if sp.role}
    expected = {}
    for key in FILTER_KEYS:
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(passages):
            groups.setdefault(getattr(p, key), []).append(i)
            asker = p.question_speaker
            if asker and key == "speaker" and asker != p.speaker:
                groups.setdefault(asker, []).append(i)
            elif asker and key == "role" and role_of.get(asker, p.role) != p.role:
                groups.setdefault(role_of[asker], []).append(i)
        expected[key] = groups
    got = filter_rows({k: _codes([getattr(p, k) for p in passages]) for k in (*FILTER_KEYS, "question_speaker")}, role_of)
    assert {k: [(v, list(r)) for v, r in g.items()] for k, g in got.items()} == \
        {k: list(g.items()) for k, g in expected.items()}
    assert any(len(g) > 1 for g in expected["role"].values()) and len(expected["speaker"]) > 5


def test_adding_replacing_and_removing_a_transcript_updates_the_snapshot_by_what_changed(tmp_path, embedder, copy_seed,
                                                                                          monkeypatch):
    """An ingest that adds, changes or removes a transcript writes the new snapshot from the
    previous one: only the added or changed transcripts' passages are read from the store and
    tokenized, and the result is the view (and the answers) of a build from the store, and of a
    snapshot written from scratch."""
    from rag import _retrieve

    src = copy_seed("a.txt")
    shutil.copy(HEARING, src.parent / HEARING.name)
    s = load_settings(store=tmp_path / "store")
    assert not ingest([src.parent], s, embedder=embedder).failed
    read, tokenized = [], []
    real_read, real_tokens = Store.all_passages, _retrieve.full_tokens

    def reading(self, transcript=None, *a, **k):
        read.append(transcript)
        return real_read(self, transcript, *a, **k)

    def tokens(p):
        tokenized.append(p.transcript)
        return real_tokens(p)

    monkeypatch.setattr(Store, "all_passages", reading)
    monkeypatch.setattr(_retrieve, "full_tokens", tokens)
    b = src.parent / "b.txt"
    steps = [
        ("add", lambda: shutil.copy(CORPUS / "nhs-impact-amar-shah-interview.txt", b), ["b.txt"]),
        ("replace", lambda: b.write_text(b.read_text(encoding="utf-8") + "\nPP: And one more thing?\n\n"
                                         "AS: We keep learning from each other, and from Uganda.\n", encoding="utf-8"), ["b.txt"]),
        ("remove", lambda: b.rename(tmp_path / "b.txt"), []),
    ]
    for step, change, changed in steps:
        read.clear()
        tokenized.clear()
        change()
        report = ingest([src.parent], s, embedder=embedder, prune=True)
        assert not report.failed, (step, report.failed)
        assert read == changed, step  # nothing else read from the store
        assert set(tokenized) == set(changed), step  # nor tokenized again
        [snap] = _snapshots(s)
        assert json.loads((snap / "meta.json").read_text())["fingerprint"] == Store(s).fingerprint()
        with monkeypatch.context() as m:
            m.setattr(Store, "all_passages", real_read)
            m.setattr(_retrieve, "full_tokens", real_tokens)
            updated = Engine(s, embedder=embedder)
            assert isinstance(updated.index().passages, _snapshot.PassageTable)
            built = Engine(s.model_copy(update={"snapshot": False}), embedder=embedder)
            _same_view(updated, built)
            assert _answers(updated) == _answers(built)
            # a snapshot written from scratch (by the first reader of a copy without one)
            copy = tmp_path / f"copy-{step}"
            shutil.copytree(s.store, copy)
            shutil.rmtree(copy / "snapshots")
            s2 = s.model_copy(update={"store": copy})
            Engine(s2, embedder=embedder).index()
            scratch = Engine(s2, embedder=embedder)
            u, f = updated.index(), scratch.index()
            assert isinstance(f.passages, _snapshot.PassageTable)
            assert list(u.passages) == list(f.passages) and list(u.n_words) == list(f.n_words)
            assert np.array_equal(np.asarray(u.vectors), np.asarray(f.vectors))
            for key in ("data", "indices", "indptr"):
                assert np.array_equal(np.asarray(u.bm25.scores[key]), np.asarray(f.bm25.scores[key])) or \
                    u.bm25.vocab_dict != f.bm25.vocab_dict  # (the same matrix when the terms are numbered alike)
            for tokens_ in (["bangladesh"], ["ugandan", "uganda"], ["school", "teacher"], sorted(f.vocab)[::50]):
                tokens_ = [t for t in tokens_ if t in f.vocab]
                if tokens_:
                    assert np.array_equal(u.bm25.get_scores(tokens_), f.bm25.get_scores(tokens_))
                    assert np.array_equal(u.bm25_answer.get_scores(tokens_), f.bm25_answer.get_scores(tokens_))
            assert updated._idf == scratch._idf and u.vocab == f.vocab and u.corpus.words == f.corpus.words
            assert {k: {v: list(r) for v, r in g.items()} for k, g in u._rows.items()} == \
                {k: {v: list(r) for v, r in g.items()} for k, g in f._rows.items()}
            assert [list(g) for g in u._rows.values()] == [list(g) for g in f._rows.values()]  # values in the same order
            assert json.loads((snap / "counts.json").read_text()) == \
                json.loads((_snapshots(s2)[0] / "counts.json").read_text())
            assert _answers(updated) == _answers(scratch)


def test_a_damaged_snapshot_is_rebuilt(two_stores, embedder, tmp_path):
    s, off = two_stores
    store = tmp_path / "store"
    shutil.copytree(s.store, store)
    s2 = s.model_copy(update={"store": store})
    [snap] = _snapshots(s2)
    expected = _answers(Engine(off, embedder=embedder))
    with open(snap / "passages" / "text.npy", "r+b") as fh:  # cut short, as by a full disk
        fh.truncate(100)
    assert _snapshot.read(s2, collection_names(s.model)[0], Store(s2).fingerprint()) is None
    e = Engine(s2, embedder=embedder)
    assert isinstance(e.index().passages, list)
    assert _answers(e) == expected
    # ... and written again whole, read by the next process
    again = Engine(s2, embedder=embedder)
    assert isinstance(again.index().passages, _snapshot.PassageTable)
    assert _answers(again) == expected


def test_a_pickled_array_in_a_snapshot_is_never_loaded(two_stores, embedder, tmp_path):
    """A store folder may come from someone else: an .npy holding a pickle (which could run code
    when loaded) makes the snapshot unusable, and the pickle is not run."""
    s, _ = two_stores
    store = tmp_path / "store"
    shutil.copytree(s.store, store)
    s2 = s.model_copy(update={"store": store})
    [snap] = _snapshots(s2)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    target = snap / "passages" / "part.npy"
    np.save(target, np.array([Payload()], dtype=object), allow_pickle=True)
    meta = json.loads((snap / "meta.json").read_text())
    meta["sizes"]["passages/part.npy"] = target.stat().st_size  # sizes that match: only the pickle is wrong
    (snap / "meta.json").write_text(json.dumps(meta))
    assert pickle.dumps(Payload())  # (the payload itself is a valid pickle)
    assert _snapshot.read(s2, collection_names(s.model)[0], Store(s2).fingerprint()) is None
    a = Engine(s2, embedder=embedder).ask(QUESTIONS[0][0])
    assert not a.abstained
    assert not marker.exists()


def test_no_snapshot_setting_writes_none(tmp_path, embedder, copy_seed):
    src = copy_seed()
    s = load_settings(store=tmp_path / "store", snapshot=False)
    ingest([src.parent], s, embedder=embedder)
    Engine(s, embedder=embedder).ask(QUESTIONS[0][0])
    assert _snapshots(s) == []


def test_a_store_without_a_snapshot_gets_one_from_its_first_reader(two_stores, embedder, tmp_path):
    """A store written before snapshots existed (or with the setting off) still works, and its
    first reader writes the snapshot for the next."""
    s, off = two_stores
    store = tmp_path / "store"
    shutil.copytree(s.store, store, ignore=shutil.ignore_patterns("snapshots"))
    s2 = s.model_copy(update={"store": store})
    assert _snapshots(s2) == []
    first = Engine(s2, embedder=embedder)
    assert isinstance(first.index().passages, list)
    assert len(_snapshots(s2)) == 1
    assert isinstance(Engine(s2, embedder=embedder).index().passages, _snapshot.PassageTable)


def test_a_read_only_store_is_read_and_not_written(two_stores, embedder):
    """A read-only store without a snapshot: answered as before (from a copy), and nothing written
    into it; with one (written at ingest), it is read where it is (test_reliability_cli)."""
    from test_reliability_cli import _rag, _read_only_copy

    s, off = two_stores
    store, prefix = _read_only_copy(s.store)
    try:
        shutil.rmtree(store / "snapshots")  # (the copy's folders are read-only, but root may remove)
        before = {p.relative_to(store): p.read_bytes() for p in store.rglob("*") if p.is_file()}
        tmp = store.parent / "tmp"
        tmp.mkdir()
        tmp.chmod(0o777)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
        env.update(HOME=str(store.parent), TMPDIR=str(tmp), PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1",
                   TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False")
        q = QUESTIONS[0][0]
        run = subprocess.run([*prefix, _rag(), "ask", q, "--json", "--store", str(store)], capture_output=True,
                             text=True, timeout=300, env=env, cwd=store.parent)
        assert run.returncode == 0, run.stderr
        got = json.loads(run.stdout)
        a = Engine(off, embedder=embedder).ask(q)
        assert got["answer"] == a.text
        assert [r["chunk_id"] for r in got["retrieved"]] == [r.passage.chunk_id for r in a.retrieved]
        assert not (store / "snapshots").exists()
        assert {p.relative_to(store): p.read_bytes() for p in store.rglob("*") if p.is_file()} == before
    finally:
        shutil.rmtree(store.parent, ignore_errors=True)


@pytest.mark.slow
def test_server_mode_keeps_its_snapshot_in_the_local_cache(tmp_path, embedder):
    from servers import ChromaServer, free_port

    server = ChromaServer(tmp_path / "db", free_port(), tmp_path / "chroma.log")
    server.start()
    try:
        cache = tmp_path / "cache"
        s = load_settings(chroma_url=server.url, cache_dir=cache)
        assert not ingest([CORPUS], s, embedder=embedder).failed
        [snap] = _snapshots(s)
        assert snap.is_relative_to(cache)
        expected = _answers(Engine(s.model_copy(update={"snapshot": False}), embedder=embedder))
        e = Engine(s, embedder=embedder)
        assert isinstance(e.index().passages, _snapshot.PassageTable)
        assert _answers(e) == expected
        # another machine (another cache) builds its own from the server, with the same answers
        other = Engine(s.model_copy(update={"cache_dir": tmp_path / "other"}), embedder=embedder)
        assert isinstance(other.index().passages, list)
        assert _answers(other) == expected
        assert len(_snapshots(other.settings)) == 1
    finally:
        server.stop()


def test_server_mode_another_machine_updates_its_own_snapshot_by_what_changed(tmp_path, embedder, copy_seed, monkeypatch):
    """Two machines on one Chroma server, each with its own snapshot: one ingests a transcript;
    the other, at its next open, reads only that transcript from the server and updates its own
    snapshot, with the answers of a view built from the server."""
    from servers import ChromaServer, free_port

    server = ChromaServer(tmp_path / "db", free_port(), tmp_path / "chroma.log")
    server.start()
    try:
        src = copy_seed("a.txt")
        shutil.copy(HEARING, src.parent / HEARING.name)
        s = load_settings(chroma_url=server.url, cache_dir=tmp_path / "cache")
        assert not ingest([src.parent], s, embedder=embedder).failed
        other = s.model_copy(update={"cache_dir": tmp_path / "other"})
        Engine(other, embedder=embedder).index()  # its own snapshot, built from the server
        [before] = _snapshots(other)
        with open(src, "a", encoding="utf-8") as fh:
            fh.write("\nPP: And one more thing?\n\nAS: We keep learning from each other.\n")
        assert not ingest([src.parent], s, embedder=embedder).failed
        read, real = [], Store.all_passages

        def reading(self, transcript=None, *a, **k):
            read.append(transcript)
            return real(self, transcript, *a, **k)

        monkeypatch.setattr(Store, "all_passages", reading)
        e = Engine(other, embedder=embedder)
        assert len(e.index()) == sum(i.n_passages for i in Store(other).manifest().values())
        monkeypatch.setattr(Store, "all_passages", real)
        assert read == ["a.txt"]
        [after] = _snapshots(other)
        assert after != before and isinstance(Engine(other, embedder=embedder).index().passages, _snapshot.PassageTable)
        built = Engine(other.model_copy(update={"snapshot": False}), embedder=embedder)
        _same_view(Engine(other, embedder=embedder), built)
        assert _answers(Engine(other, embedder=embedder)) == _answers(built)
    finally:
        server.stop()


# ---------------------------------------------------------------------------- crashes

# the ingest is killed (SIGKILL) while it writes the snapshot, at each of these points
_KILLS = {
    # some files written into the temporary folder
    "mid_write": textwrap.dedent("""
        real = _snapshot._save
        def save(path, array):
            real(path, array)
            if path.name == "vectors.npy":
                die()
        _snapshot._save = save
    """),
    # everything written and flushed, not yet renamed into place
    "before_rename": textwrap.dedent("""
        real = _snapshot._sync_folder
        def sync(path):
            real(path)
            die()
        _snapshot._sync_folder = sync
    """),
}

from test_derived import _DRIVER  # noqa: E402  (an ingest in a child process, ``die()`` where the patch says)


@pytest.mark.parametrize("point", sorted(_KILLS))
def test_sigkill_while_the_snapshot_is_written_leaves_the_store_usable(point, tmp_path, embedder, copy_seed):
    src = copy_seed()
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    run = subprocess.run([sys.executable, "-c", _DRIVER.format(patch=_KILLS[point]), str(src.parent), str(store)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == -signal.SIGKILL, run.stderr
    s = load_settings(store=store)
    left = _snapshots(s)
    assert len(left) == 1 and ".tmp-" in left[0].name  # only the temporary folder: nothing under the real name
    assert not (store / "ingest.unfinished").exists()  # the passages were all written before
    expected = _answers(Engine(s.model_copy(update={"snapshot": False}), embedder=embedder))
    e = Engine(s, embedder=embedder)
    assert isinstance(e.index().passages, list)  # the partial snapshot is not read
    assert _answers(e) == expected
    # that reader wrote it whole, and removed the killed writer's leftovers
    [snap] = _snapshots(s)
    assert ".tmp-" not in snap.name
    assert _answers(Engine(s, embedder=embedder)) == expected


# die() only while the snapshot is written from the previous one (``_snapshot._write_update``)
_ONLY_IN_UPDATE = textwrap.dedent("""
    _die, updating = die, []
    def die():
        if updating:
            _die()
    _real_update = _snapshot._write_update
    def _write_update(*a, **k):
        updating.append(1)
        return _real_update(*a, **k)
    _snapshot._write_update = _write_update
""")


@pytest.mark.parametrize("point", sorted(_KILLS))
def test_sigkill_while_the_snapshot_is_updated_leaves_it_consistent_with_the_passages(point, tmp_path, embedder, copy_seed):
    """A transcript added to a store with a snapshot: the ingest is killed while it writes the
    new snapshot from the previous one. The previous snapshot is left whole (of the previous
    store version, so not used); the next reader updates it and answers as a build from the
    store does."""
    src = copy_seed("a.txt")
    shutil.copy(HEARING, src.parent / HEARING.name)
    store = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

    def run(patch: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", _DRIVER.format(patch=patch), str(src.parent), str(store)],
                              env=env, capture_output=True, text=True, timeout=600)

    assert run("").returncode == 0
    s = load_settings(store=store)
    [before] = _snapshots(s)
    shutil.copy(CORPUS / "nhs-impact-amar-shah-interview.txt", src.parent / "b.txt")
    killed = run(_ONLY_IN_UPDATE + _KILLS[point])  # (exits normally if the snapshot is not updated)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = _snapshots(s)
    assert before in left and len(left) == 2 and ".tmp-" in [p for p in left if p != before][0].name
    assert "b.txt" in Store(s).manifest() and not (store / "ingest.unfinished").exists()
    assert _snapshot.read(s, collection_names(s.model)[0], Store(s).fingerprint()) is None
    expected = _answers(Engine(s.model_copy(update={"snapshot": False}), embedder=embedder))
    e = Engine(s, embedder=embedder)
    assert len(e.index()) == sum(i.n_passages for i in Store(s).manifest().values())
    assert _answers(e) == expected
    [snap] = _snapshots(s)  # updated by that reader; the killed writer's folder and the old snapshot removed
    assert ".tmp-" not in snap.name and snap != before
    again = Engine(s, embedder=embedder)
    assert isinstance(again.index().passages, _snapshot.PassageTable)
    _same_view(again, Engine(s.model_copy(update={"snapshot": False}), embedder=embedder))
    assert _answers(again) == expected


def test_the_snapshot_holds_no_pickle(two_stores):
    s, _ = two_stores
    [snap] = _snapshots(s)
    for f in snap.rglob("*.npy"):
        np.load(f, allow_pickle=False)  # raises for an object (pickled) array
    kinds = {f.suffix for f in snap.rglob("*") if f.is_file()}
    assert kinds <= {".npy", ".json"}, kinds


def test_manifest_round_trip(two_stores):
    s, _ = two_stores
    manifest = Store(s).manifest()
    back = _snapshot._manifest_from(json.loads(json.dumps(_snapshot._manifest_json(manifest))))
    assert back == manifest
    assert all(dataclasses.is_dataclass(v) for v in back.values())


def test_a_snapshot_another_process_wrote_meanwhile_is_kept(two_stores, tmp_path, monkeypatch):
    """Two processes building the same snapshot at once: the second to finish keeps the first's
    (readers may have it open) and removes its own temporary folder."""
    from rag._engine import build_view

    s, _ = two_stores
    store = tmp_path / "store"
    shutil.copytree(s.store, store)
    s2 = s.model_copy(update={"store": store})
    [snap] = _snapshots(s2)
    before = (snap / "meta.json").read_bytes()
    st = Store(s2)
    view, whole = build_view(st, st.fingerprint())
    assert whole
    real, calls = _snapshot._meta, []

    def not_there_at_first(*a, **k):  # the snapshot appears while this process builds its own
        calls.append(1)
        return None if len(calls) == 1 else real(*a, **k)

    monkeypatch.setattr(_snapshot, "_meta", not_there_at_first)
    assert _snapshot.write(s2, collection_names(s.model)[0], view) is None
    assert len(calls) == 2
    assert _snapshots(s2) == [snap] and (snap / "meta.json").read_bytes() == before
