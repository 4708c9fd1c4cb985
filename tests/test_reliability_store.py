"""The store under stress: very many transcripts, readers during a rebuild, server faults, damaged
files, a full disk and long questions (issue 14, points 1, 4, 5, 7, 10 and 13; docs/RELIABILITY.md, "The store").

Each test reproduces one defect; sizes are chosen to run in seconds."""

from __future__ import annotations

import errno
import http.server
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import rag._engine
import rag._ingest
import rag._store
from conftest import CORPUS, ROOT, SEED
from rag import Engine, StoreError, StoreUnavailableError, ingest, load_settings
from rag._chunk import chunk_transcript
from rag._parse import parse_bytes
from rag._store import Store, collection_names
from rag.cli import main
from servers import ChromaServer, chroma_server, free_port  # noqa: F401  (chroma_server: a fixture)

QUESTION = "What can we learn from Bangladesh?"


@pytest.fixture(autouse=True)
def _cli_uses_the_session_model(monkeypatch, embedder):
    monkeypatch.setattr(rag._ingest, "Embedder", lambda name: embedder)
    monkeypatch.setattr(rag._engine, "Embedder", lambda name: embedder)


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out + err


def fresh_client_state() -> None:
    """Forget this process's embedded Chroma clients, as a new `rag` process would start."""
    from chromadb.api.shared_system_client import SharedSystemClient

    SharedSystemClient.clear_system_cache()


# ---------------------------------------------------------------------- 1: 32,767 transcripts


@pytest.mark.timeout(180)
def test_a_store_of_more_than_32767_transcripts_lists_fingerprints_and_repairs(tmp_path):
    """Chroma binds one SQL variable per record it returns or filters on: an unbounded read of
    the manifest, or a $nin over every transcript id, failed from 32,767 transcripts on."""
    settings = load_settings(store=tmp_path / "store")
    store = Store(settings, create=True)
    n = 32_800
    for at in range(0, n, 5000):  # manifest records written directly, tiny payloads: seconds
        ids = [f"t{i:05d}.txt" for i in range(at, min(n, at + 5000))]
        store._manifest.add(ids=ids, embeddings=[[1.0]] * len(ids), metadatas=[{"version": "v1"}] * len(ids))
    # one transcript with one current passage, and two passages an interrupted ingest left
    store._manifest.upsert(ids=["t00001.txt"], embeddings=[[1.0]],
                           metadatas=[{"version": "v1", "counts": '{"answer": 1}'}])
    store._passages.add(
        ids=["keep@v1", "old@v0", "gone@v1"], embeddings=[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
        metadatas=[{"transcript": "t00001.txt", "version": "v1"}, {"transcript": "t00001.txt", "version": "v0"},
                   {"transcript": "removed.txt", "version": "v1"}])

    manifest = store.manifest()
    assert len(manifest) == n and manifest["t00001.txt"].n_passages == 1
    assert store.fingerprint() == store.fingerprint()
    assert store.repair(manifest) == 2
    assert store._passages.get(include=[])["ids"] == ["keep@v1"]
    assert Store(settings).fingerprint() == store.fingerprint()


@pytest.mark.timeout(300)
def test_recovery_of_a_store_of_more_than_5461_transcripts(tmp_path):
    """Found by bench/many_transcripts.py: the rebuild wrote every manifest record in one call,
    and Chroma refuses a write of more than 5,461 records, so a store of more transcripts could
    not be recovered after a killed ingest ("Batch size of 99999 is greater than max batch size")."""
    settings = load_settings(store=tmp_path / "store")
    store = Store(settings, create=True)
    n = 6000
    ids = [f"t{i:05d}.txt" for i in range(n)]
    for at in range(0, n, 1000):
        batch = ids[at : at + 1000]
        store._manifest.add(ids=batch, embeddings=[[1.0]] * len(batch), documents=["text"] * len(batch),
                            metadatas=[{"version": "v1"}] * len(batch))
    (settings.store / "ingest.unfinished").write_text("1\n")  # as a killed ingest leaves it
    with store.ingest_lock():
        notes = store.recover(lambda texts: np.zeros((len(texts), 2), dtype=np.float32))
    assert any("rebuilt the vector index: 0 passages of 6000 transcripts" in x for x in notes), notes
    fresh_client_state()
    assert sorted(Store(settings).manifest()) == ids


# ---------------------------------------------------------------------- 1: the cost of opening a large store


def _manifest_from_chroma(store: Store) -> dict:
    """The manifest decoded straight from Chroma's records, field by field (as before the cache)."""
    got = store._records(store._manifest, ["metadatas"])
    out = {}
    for tid, md in zip(got["ids"], got["metadatas"]):
        out[tid] = rag._store.TranscriptInfo(
            id=tid, hash=md["hash"], version=md["version"], title=md["title"], date=md["date"], source=md["source"],
            format=md["format"], speakers=[rag._store.Speaker(**sp) for sp in json.loads(md["speakers"])],
            counts=json.loads(md["counts"]), units=json.loads(md["units"]), warnings=json.loads(md["warnings"]),
            ingested_at=md["ingested_at"])
    return out


def _no_manifest_reads(monkeypatch) -> None:
    def refuse(self, collection, include):
        raise AssertionError(f"read every record of {collection.name}")
    monkeypatch.setattr(Store, "_records", refuse)


def test_the_fingerprint_moves_with_every_write_and_only_then(tmp_path, embedder, monkeypatch):
    """The fingerprint was a digest of the whole manifest (590 ms at 3,168 transcripts, read up
    to once a second by Engine.index); now it is the store's generation, moved by every write of
    the manifest: an ingest that adds or changes a file, a prune, a recovery. Reading it reads
    no manifest record."""
    corpus = tmp_path / "c"
    shutil.copytree(CORPUS, corpus)
    (corpus / "second.txt").write_text("Interviewer: Where?\n\nGuest: In Leeds, by the river.\n", encoding="utf-8")
    settings = load_settings(store=tmp_path / "store")
    ingest([corpus], settings, embedder=embedder)
    store = Store(settings)

    def fp() -> str:
        with monkeypatch.context() as m:
            _no_manifest_reads(m)
            return store.fingerprint()

    seen = [fp()]
    assert fp() == seen[-1] and Store(settings).fingerprint() == seen[-1]
    # no change: reads, an ingest of the same files, a repair with nothing to repair, a reopen
    Engine(settings, embedder=embedder).ask(QUESTION)
    assert not ingest([corpus], settings, embedder=embedder).failed
    assert store.repair(store.manifest()) == 0
    store.reopen()
    assert fp() == seen[-1]

    def changed(step: str) -> None:
        now = fp()
        assert now not in seen, step
        seen.append(now)

    (corpus / "second.txt").write_text("Interviewer: Where?\n\nGuest: In York, by the walls.\n", encoding="utf-8")
    ingest([corpus], settings, embedder=embedder)
    changed("a changed file")
    (corpus / "third.txt").write_text("Interviewer: When?\n\nGuest: In May, after the vote.\n", encoding="utf-8")
    ingest([corpus], settings, embedder=embedder)
    changed("an added file")
    (corpus / "third.txt").unlink()
    ingest([corpus], settings, embedder=embedder, prune=True)
    changed("a prune")
    (settings.store / "ingest.unfinished").write_text("1\n")  # as a killed ingest leaves it
    assert any("rebuilt" in x for x in ingest([corpus], settings, embedder=embedder).notes)
    changed("a recovery")
    assert sorted(Store(settings).manifest()) == ["nhs-impact-amar-shah-interview.txt", "second.txt"]


def test_a_writer_killed_inside_a_change_is_seen_once_it_is_gone(tmp_path, embedder):
    """A write of the manifest is bracketed by an open generation and a closed one; a writer
    killed between them leaves it open. While that process lives the fingerprint stays; once it
    is gone the fingerprint moves (once), so a reader's view made before the kill is reloaded."""
    settings = load_settings(store=tmp_path / "store")
    ingest([CORPUS], settings, embedder=embedder)
    store = Store(settings, create=True)
    before = store.fingerprint()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        store._gen.modify(metadata={**rag._store._gen_meta(7, True), "owner": f"{os.uname().nodename}:{child.pid}"})
        open_fp = store.fingerprint()
        assert open_fp != before and Store(settings).fingerprint() == open_fp
    finally:
        child.kill()
        child.wait()
    gone = Store(settings).fingerprint()
    assert gone != open_fp and store.fingerprint() == gone
    # and the next ingest (its recovery runs after a killed one) closes it
    (settings.store / "ingest.unfinished").write_text("1\n")
    ingest([CORPUS], settings, embedder=embedder)
    state = Store(settings)._generation()
    assert state is not None and not state["open"]


def test_the_manifest_is_read_once_per_generation_and_identical(tmp_path, embedder, monkeypatch):
    """Reading 100,000 manifest records took Chroma 12.6 s, for every command. The first read
    of a generation saves them (``manifest.cache``); later reads of that generation use the
    copy, which gives exactly what Chroma's records give; a later write makes it unused."""
    corpus = tmp_path / "c"
    shutil.copytree(CORPUS, corpus)
    for k in range(3):
        (corpus / f"extra{k}.md").write_text(f"---\ntitle: Extra {k}\n---\nInterviewer: Why {k}?\n\n"
                                             f"Zoë Ng: Because of the {k} bridges.\n", encoding="utf-8")
    settings = load_settings(store=tmp_path / "store")
    ingest([corpus], settings, embedder=embedder)
    store = Store(settings)
    expected = _manifest_from_chroma(store)
    assert len(expected) == 4
    (settings.store / "manifest.cache").unlink(missing_ok=True)
    assert store.manifest() == expected  # read from Chroma, saved
    assert (settings.store / "manifest.cache").exists()
    with monkeypatch.context() as m:
        _no_manifest_reads(m)
        assert store.manifest() == expected and Store(settings).manifest() == expected
        assert Engine(settings, embedder=embedder).transcripts() == expected

    (corpus / "extra0.md").unlink()
    ingest([corpus], settings, embedder=embedder, prune=True)  # the saved copy is of an older generation
    fresh_client_state()
    after = Store(settings).manifest()
    assert sorted(after) == sorted(set(expected) - {"extra0.md"}) and after == _manifest_from_chroma(Store(settings))


def test_a_store_without_a_generation_is_fingerprinted_by_its_manifest_until_the_next_ingest(tmp_path, embedder):
    """Stores written before generations have none: their fingerprint is the manifest digest as
    before (no cache), and the next ingest starts the generation; a reader notices it."""
    settings = load_settings(store=tmp_path / "store")
    ingest([CORPUS], settings, embedder=embedder)
    store = Store(settings, create=True)
    store._client.delete_collection(store._gen.name)
    (settings.store / "manifest.cache").unlink()
    fresh_client_state()
    old = Store(settings)
    legacy = old.fingerprint()
    assert old._generation() is None and len(legacy) == 40 and old.fingerprint() == legacy
    assert old.manifest() == _manifest_from_chroma(old) and not (settings.store / "manifest.cache").exists()
    ingest([CORPUS], settings, embedder=embedder)  # nothing to add: the generation starts
    assert old.fingerprint() != legacy and old.fingerprint().startswith("g")


# ---------------------------------------------------------------------- 4: readers during a rebuild


def test_a_reader_during_recovery_leaves_the_rebuild_alone(tmp_path, embedder, capsys, monkeypatch):
    """`rag stats` started while an ingest's recover() filled `<name>_rebuild` deleted the copy
    (every Store() finished or discarded rebuilds); the ingest then died with NotFoundError."""
    from chromadb.api.models.Collection import Collection

    corpus = tmp_path / "c"
    shutil.copytree(CORPUS, corpus)
    settings = load_settings(store=tmp_path / "store")
    n = ingest([corpus], settings, embedder=embedder).summary()["passages"]
    (settings.store / "ingest.unfinished").write_text("1\n")  # as if the last ingest was killed

    original = Collection.add
    readers = []

    def add(self, *args, **kwargs):
        if self.name.endswith("_rebuild") and not readers:  # the copy is being filled: a reader starts
            code, out = run_cli(capsys, "stats", "--store", str(settings.store))
            readers.append((code, out))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Collection, "add", add)
    report = ingest([corpus], settings, embedder=embedder)
    monkeypatch.setattr(Collection, "add", original)
    assert readers and readers[0][0] == 0 and "1 transcripts" in readers[0][1], readers
    assert any(f"rebuilt the vector index: {n} passages" in x for x in report.notes), report.notes
    store = Store(settings)
    assert store.count() == n and not any(c.endswith("_rebuild") for c in store._collection_names())


def test_an_unfinished_rebuild_is_finished_only_by_the_lock_holder(tmp_path, embedder):
    """Killed between dropping a collection and renaming its complete copy: readers read the copy
    and leave it; the next holder of the ingest lock renames it."""
    settings = load_settings(store=tmp_path / "store")
    ingest([CORPUS], settings, embedder=embedder)
    writer = Store(settings, create=True)
    n = writer.count()
    p_name, _ = collection_names(settings.model)
    with writer.ingest_lock():
        writer._passages.modify(name=p_name + "_rebuild")  # the holder is between drop and rename
        reader = Store(settings)
        assert reader.count() == n
        assert p_name not in reader._collection_names() and p_name + "_rebuild" in reader._collection_names()
        assert len(reader.all_passages()[0]) == n
    after = Store(settings, create=True)
    with after.ingest_lock():
        assert after._passages.name == p_name and after.count() == n
    assert p_name + "_rebuild" not in after._collection_names()


# ---------------------------------------------------------------------- 5: the server lock's release


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_server_crash_during_an_ingest_does_not_hide_the_ingests_error(chroma_server):
    """The unguarded `finally: coll.delete()` of the server lock raised ConnectError over the
    ingest's own error when the server was gone."""
    store = Store(load_settings(chroma_url=chroma_server.url), create=True, timeout=5)
    with pytest.raises(RuntimeError, match="the ingest's own error") as info:
        with store.ingest_lock():
            chroma_server.stop()
            raise RuntimeError("the ingest's own error")
    assert any("expires 10 minutes" in note for note in getattr(info.value, "__notes__", []))


# ---------------------------------------------------------------------- 10: server faults


class _SilentServer:
    """Accepts connections on 127.0.0.1 and never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        self.done = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self.done.is_set():
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:  # the accept timed out, or the socket was closed
                continue

    def close(self) -> None:
        self.done.set()
        time.sleep(0.3)  # the accepting thread sees it before the socket goes
        for c in self.conns:
            c.close()
        self.sock.close()


@pytest.mark.timeout(30)
def test_a_server_that_never_answers_is_reported_within_the_timeout(capsys, monkeypatch):
    server = _SilentServer()
    try:
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="did not answer within"):
            Store(load_settings(chroma_url=server.url), timeout=1)
        assert time.monotonic() - t0 < 10
        monkeypatch.setenv("RAG_CHROMA_TIMEOUT", "1")  # the setting the CLI and the app read
        code, out = run_cli(capsys, "stats", "--chroma-url", server.url)
        assert code == 1 and "did not answer within 1 s" in out
    finally:
        server.close()


@pytest.mark.timeout(60)
def test_a_plain_web_server_on_the_port_is_a_clear_error(tmp_path, capsys):
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{web.server_address[1]}"
    try:
        code, out = run_cli(capsys, "stats", "--chroma-url", url)
        assert code == 1 and "is not a Chroma server" in out and "HTTP 404" in out and "<html" not in out.lower()
        with pytest.raises(StoreUnavailableError):
            Store(load_settings(chroma_url=url))
    finally:
        web.shutdown()
        web.server_close()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_server_that_stops_answering_mid_session_times_out(chroma_server, embedder):
    settings = load_settings(chroma_url=chroma_server.url)
    ingest([CORPUS], settings, embedder=embedder)
    store = Store(settings, timeout=2)
    assert len(store.manifest()) == 1
    chroma_server.proc.send_signal(signal.SIGSTOP)  # alive, connections accepted, no answers
    try:
        t0 = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="did not answer within"):
            store.manifest()
        assert time.monotonic() - t0 < 20
    finally:
        chroma_server.proc.send_signal(signal.SIGCONT)
    assert len(store.manifest()) == 1  # answers again: the same Store goes on


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_server_restarted_on_another_path_is_a_clear_error_then_picked_up(tmp_path, embedder, capsys):
    port = free_port()
    first = ChromaServer(tmp_path / "a", port, tmp_path / "a.log")
    second = ChromaServer(tmp_path / "b", port, tmp_path / "b.log")
    try:
        first.start()
        settings = load_settings(chroma_url=first.url)
        ingest([CORPUS], settings, embedder=embedder)
        engine = Engine(settings, embedder=embedder)
        assert not engine.ask(QUESTION).abstained
        store = Store(settings)
        first.stop()
        second.start()  # the same port, another --path: none of the store's collections
        with pytest.raises(StoreUnavailableError, match="another --path") as info:
            store.manifest()
        assert "--path" in info.value.help_message
        with pytest.raises(StoreUnavailableError, match="another --path"):
            engine.ask(QUESTION)
        ingest([CORPUS], settings, embedder=embedder)  # the store built there: picked up by itself
        assert len(store.manifest()) == 1
        assert not engine.ask(QUESTION).abstained
    finally:
        first.stop()
        second.stop()


# ---------------------------------------------------------------------- 13: damaged files, full disk


@pytest.fixture(scope="module")
def pristine_store(tmp_path_factory, embedder):
    """1,120 passages (the seed interview 80 times, vectors embedded once): over the size at which
    embedded Chroma keeps the vectors only in its HNSW files (smaller stores replay them from
    its log, and a lost file does no harm)."""
    folder = tmp_path_factory.mktemp("pristine") / "store"
    settings = load_settings(store=folder)
    store = Store(settings, create=True)
    data = SEED.read_bytes()
    base = parse_bytes(data, "seed.txt", ".txt")
    passages = chunk_transcript(base, embedder.count_tokens, embedder.max_tokens)
    vectors = embedder.encode([p.embed_text for p in passages])
    items = []
    for k in range(80):
        t = parse_bytes(data, f"t{k:02d}.txt", ".txt")
        items.append((t, chunk_transcript(t, embedder.count_tokens, embedder.max_tokens), vectors, f"{k:064x}"))
    store.write_transcripts(items)
    n = store.count()
    assert n == 80 * len(passages)
    fresh_client_state()
    return folder, n, {p.embed_text: v for p, v in zip(passages, vectors)}


def _copy(pristine, tmp_path) -> Path:
    folder = tmp_path / "store"
    shutil.copytree(pristine, folder)
    return folder


def _passages_index_dir(folder: Path) -> Path:
    p_name, _ = collection_names(load_settings(store=folder).model)
    db = sqlite3.connect(f"file:{folder / 'chroma.sqlite3'}?mode=ro", uri=True)
    try:
        (seg,) = db.execute("SELECT s.id FROM segments s JOIN collections c ON s.collection = c.id "
                            "WHERE s.scope = 'VECTOR' AND c.name = ?", (p_name,)).fetchone()
    finally:
        db.close()
    return folder / seg


def _damage(d: Path, how: str) -> None:
    rng = np.random.default_rng(0)
    if how == "deleted":
        for f in d.iterdir():
            f.unlink()
    elif how == "garbled header":
        # (random bytes inside data_level0.bin crash Chroma's native HNSW code outright: see
        # test_random_bytes_in_the_vector_data_are_rebuilt_not_a_crash)
        f = d / "header.bin"
        f.write_bytes(rng.integers(0, 256, f.stat().st_size, dtype=np.uint8).tobytes())
    else:
        (d / "header.bin").write_bytes(b"")


def _files(folder: Path) -> dict[str, int]:
    return {str(f.relative_to(folder)): f.stat().st_size for f in folder.rglob("*") if f.is_file()}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["deleted", "garbled header", "emptied header"])
def test_a_damaged_vector_index_is_a_clear_error_and_ingest_repairs_it(how, pristine_store, tmp_path, embedder, capsys):
    pristine, n, vectors = pristine_store
    folder = _copy(pristine, tmp_path)
    _damage(_passages_index_dir(folder), how)
    settings = load_settings(store=folder)

    with pytest.raises(StoreError, match="vector index") as info:
        Engine(settings, embedder=embedder).ask(QUESTION)
    assert "rag ingest" in info.value.help_message
    code, out = run_cli(capsys, "ask", QUESTION, "--store", str(folder))
    assert code == 1 and "rag ingest" in out

    # what `rag ingest` does first (re-embedding through a lookup: the texts are the seed's)
    store = Store(settings, create=True)
    with store.ingest_lock():
        notes = store.recover(lambda texts: np.stack([vectors[t] for t in texts]))
    assert any(f"rebuilt the vector index: {n} passages" in x for x in notes), notes
    if how != "deleted":  # not even the records could be read: the files were set aside, kept
        assert any("moved to" in x for x in notes)
        assert list(folder.glob("damaged-*/*/header.bin"))
    fresh_client_state()
    answer = Engine(load_settings(store=folder), embedder=embedder).ask(QUESTION)
    assert not answer.abstained and "Bangladesh" in answer.citations[0].quote


@pytest.mark.timeout(300)
def test_random_bytes_in_the_vector_data_are_rebuilt_not_a_crash(pristine_store, tmp_path, embedder):
    """Random bytes inside ``data_level0.bin`` (header intact) make Chroma's native HNSW code
    crash the process that loads the index (SIGSEGV), reading the records included: the
    recovery's health check itself killed `rag ingest`, and before this fix it killed this test
    process. Now the check runs in a child process; its crash means the files are set aside
    and the index rebuilt from the records."""
    pristine, n, vectors = pristine_store
    folder = _copy(pristine, tmp_path)
    f = _passages_index_dir(folder) / "data_level0.bin"
    f.write_bytes(np.random.default_rng(0).integers(0, 256, f.stat().st_size, dtype=np.uint8).tobytes())
    settings = load_settings(store=folder)
    store = Store(settings, create=True)
    assert store._index_health() == "crashed"
    with store.ingest_lock():
        notes = store.recover(lambda texts: np.stack([vectors[t] for t in texts]))
    assert any("are damaged (" in x and "moved to" in x for x in notes), notes
    assert any(f"rebuilt the vector index: {n} passages" in x for x in notes), notes
    assert list(folder.glob("damaged-*/*/data_level0.bin"))
    assert store._index_health() == "ok"
    fresh_client_state()
    answer = Engine(load_settings(store=folder), embedder=embedder).ask(QUESTION)
    assert not answer.abstained and "Bangladesh" in answer.citations[0].quote


@pytest.mark.timeout(300)
def test_the_health_check_runs_again_only_when_the_index_files_changed(pristine_store, tmp_path, monkeypatch):
    """The child process checking the vector index (about a second) runs when the index files
    changed since they were last known to answer; an unchanged store is not checked again. Random
    bytes written into them are found (by the file check or the child) and the index rebuilt."""
    pristine, n, vectors = pristine_store
    folder = _copy(pristine, tmp_path)
    calls = []
    real = Store._index_health
    monkeypatch.setattr(Store, "_index_health", lambda self: calls.append(1) or real(self))

    def recover(store):
        with store.ingest_lock():
            return store.recover(lambda texts: np.stack([vectors[t] for t in texts]))

    store = Store(load_settings(store=folder), create=True)
    assert recover(store) == [] and len(calls) == 1  # never checked: checked, and recorded
    assert (folder / rag._store._CHECKED).exists()
    assert recover(store) == [] and len(calls) == 1  # unchanged: not checked again
    f = _passages_index_dir(folder) / "data_level0.bin"
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 1_000_000))  # written again, same bytes
    assert recover(store) == [] and len(calls) == 2, "changed index files were not checked"
    assert recover(store) == [] and len(calls) == 2
    f.write_bytes(np.random.default_rng(1).integers(0, 256, f.stat().st_size, dtype=np.uint8).tobytes())
    fresh_client_state()
    store = Store(load_settings(store=folder), create=True)
    notes = recover(store)  # damaged: found (by the file check or the child), set aside, rebuilt
    assert any(f"rebuilt the vector index: {n} passages" in x for x in notes), notes
    fresh_client_state()
    answer = Engine(load_settings(store=folder), embedder=None).index()
    assert len(answer) == n


def test_an_ingest_records_the_index_it_left_and_the_next_one_skips_the_check(tmp_path, embedder, monkeypatch):
    settings = load_settings(store=tmp_path / "store")
    ingest([CORPUS], settings, embedder=embedder)
    assert (tmp_path / "store" / rag._store._CHECKED).exists()
    monkeypatch.setattr(Store, "_index_health", lambda self: pytest.fail("an unchanged store was checked again"))
    again = ingest([CORPUS], settings, embedder=embedder)
    assert {f.status for f in again.files} == {"unchanged"}


def _ask_process(folder: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False")
    return subprocess.run([sys.executable, "-m", "rag.cli", "ask", QUESTION, "--store", str(folder)],
                          capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.timeout(300)
def test_random_bytes_in_the_vector_data_are_a_clear_error_for_ask_not_a_crash(pristine_store, tmp_path, embedder):
    """Random bytes in the middle of the passages' ``data_level0.bin``: `rag ask` (and the app,
    which opens the store the same way) died with SIGSEGV in Chroma's native code, which loads
    the index to count, read or search the passages, until the next `rag ingest`. Now the
    index files are checked before Chroma loads them: a clear error naming the fix; and the
    ingest rebuilds the index."""
    pristine, n, vectors = pristine_store
    folder = _copy(pristine, tmp_path)
    f = _passages_index_dir(folder) / "data_level0.bin"
    data = bytearray(f.read_bytes())
    lo, hi = len(data) // 4, 3 * len(data) // 4
    data[lo:hi] = np.random.default_rng(1).integers(0, 256, hi - lo, dtype=np.uint8).tobytes()
    f.write_bytes(bytes(data))

    run = _ask_process(folder)
    assert run.returncode == 1, (run.returncode, run.stderr[-2000:])  # was -11 (SIGSEGV)
    assert "Traceback" not in run.stderr
    assert "vector index files" in run.stderr and "damaged" in run.stderr and "rag ingest" in run.stderr
    with pytest.raises(StoreError, match="damaged") as info:
        Engine(load_settings(store=folder), embedder=embedder).ask(QUESTION)
    assert "rag ingest" in info.value.help_message

    store = Store(load_settings(store=folder), create=True)  # what `rag ingest` does first
    with store.ingest_lock():
        notes = store.recover(lambda texts: np.stack([vectors[t] for t in texts]))
    assert any("are damaged (" in x and "moved to" in x for x in notes), notes
    assert any(f"rebuilt the vector index: {n} passages" in x for x in notes), notes
    run = _ask_process(folder)
    assert run.returncode == 0 and "Bangladesh" in run.stdout, run.stderr[-2000:]


def test_the_index_file_check_passes_whole_indexes_and_names_damage(pristine_store, tmp_path):
    """``_hnsw_problem`` on the files Chroma wrote: nothing found; on each kind of damage that
    reaches Chroma's native code (a neighbour out of range, a count over the degree), named."""
    pristine, _, _ = pristine_store
    folder = _copy(pristine, tmp_path)
    d = _passages_index_dir(folder)
    assert rag._store._hnsw_problem(d) is None
    assert Store(load_settings(store=folder))._index_files_problem() is None
    header = rag._store._HNSW_HEADER.unpack((d / "header.bin").read_bytes())
    per_el = header[4]
    level0 = d / "data_level0.bin"
    good = level0.read_bytes()
    for words in ([1, 10**6], [500, 0]):  # one neighbour that is no element; a count over the degree (32)
        data = bytearray(good)
        data[7 * per_el : 7 * per_el + 8] = np.array(words, dtype="<u4").tobytes()
        level0.write_bytes(bytes(data))
        assert "neighbour lists out of range" in (rag._store._hnsw_problem(d) or ""), words
    level0.write_bytes(good[: len(good) // 2])
    assert "bytes for" in (rag._store._hnsw_problem(d) or "")


def test_index_files_that_passed_the_check_are_not_scanned_again_until_they_change(pristine_store, tmp_path, monkeypatch):
    """The check reads every element of every index (0.4 s at 100,000 passages, each time a
    process opens the store): files with the size and time they had when it last passed are not
    read again; a write to them, as random bytes are, brings the check back, and it names them."""
    pristine, _, _ = pristine_store
    folder = _copy(pristine, tmp_path)
    scanned: list[str] = []
    real = rag._store._hnsw_problem
    monkeypatch.setattr(rag._store, "_hnsw_problem", lambda d: scanned.append(d.name) or real(d))
    store = Store(load_settings(store=folder))
    first = list(scanned)
    assert _passages_index_dir(folder).name in first and (folder / "index.scanned").is_file()
    scanned.clear()
    assert store._index_files_problem() is None and scanned == []  # unchanged: not read again
    f = _passages_index_dir(folder) / "data_level0.bin"
    data = bytearray(f.read_bytes())
    lo, hi = len(data) // 4, 3 * len(data) // 4
    data[lo:hi] = np.random.default_rng(1).integers(0, 256, hi - lo, dtype=np.uint8).tobytes()
    f.write_bytes(bytes(data))  # same size, a new modification time
    problem = store._index_files_problem()
    assert scanned == [f.parent.name] and problem and problem.startswith(f.parent.name)
    with pytest.raises(StoreError, match="damaged"):
        Store(load_settings(store=folder))


@pytest.mark.timeout(300)
def test_a_truncated_database_is_a_clear_error_and_nothing_is_touched(pristine_store, tmp_path, embedder, capsys):
    pristine, _, _ = pristine_store
    folder = _copy(pristine, tmp_path)
    db = folder / "chroma.sqlite3"
    os.truncate(db, db.stat().st_size // 2)
    (folder / "ingest.unfinished").write_text("1\n")  # recovery would run
    before = _files(folder)
    for argv in (["ingest", str(CORPUS)], ["stats"], ["ask", QUESTION]):
        fresh_client_state()
        code, out = run_cli(capsys, *argv, "--store", str(folder))
        assert code == 1 and "is damaged" in out and "backup" in out, (argv, out)
    fresh_client_state()
    with pytest.raises(StoreError, match="damaged"):
        ingest([CORPUS], load_settings(store=folder), embedder=embedder)
    assert _files(folder) == before


@pytest.mark.timeout(300)
@pytest.mark.parametrize("where", ["chroma", "mark"])
def test_a_full_disk_is_a_clear_error_and_the_store_stays_readable(where, tmp_path, embedder, capsys, monkeypatch):
    from chromadb.api.models.Collection import Collection

    corpus = tmp_path / "c"
    shutil.copytree(CORPUS, corpus)
    settings = load_settings(store=tmp_path / "store")
    ingest([corpus], settings, embedder=embedder)
    before = Store(settings).manifest()
    talk = corpus / "talk.txt"
    talk.write_text("PP: What worries you?\nAS: That the framework is taken for the work itself.\n")

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "chroma":
        monkeypatch.setattr(Collection, "upsert", no_space)
    else:
        original = Path.write_text
        monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: no_space() if self.name == "ingest.unfinished"
                            else original(self, *a, **k))
    code, out = run_cli(capsys, "ingest", str(corpus), "--store", str(settings.store))
    monkeypatch.undo()
    assert code == 1 and "no space left" in out.lower() and "Free space" in out, out

    store = Store(settings)
    assert {t: i.version for t, i in store.manifest().items()} == {t: i.version for t, i in before.items()}
    assert store.count() == sum(i.n_passages for i in before.values())
    assert not (settings.store / "ingest.unfinished").exists()
    answer = Engine(settings, embedder=embedder).ask(QUESTION)
    assert not answer.abstained and "Bangladesh" in answer.citations[0].quote


# ---------------------------------------------------------------------- 7: storage amplification


def _prose(rng: np.random.Generator, chars: int) -> str:
    words = ("the committee asked about funding for schools teachers pupils and budget plans with evidence "
             "from the minister report on health services local authority support staff training").split()
    paragraphs, size = [], 0
    while size < chars:
        sentences = [" ".join(rng.choice(words, rng.integers(8, 20))).capitalize() + "." for _ in range(12)]
        paragraphs.append(" ".join(sentences))
        size += len(paragraphs[-1]) + 2
    return "\n\n".join(paragraphs)


def _stored_bytes(collection) -> int:
    """What a collection stores besides its vectors: documents and metadata values."""
    got = collection.get(include=["documents", "metadatas"])
    return (sum(len((d or "").encode()) for d in got["documents"])
            + sum(len(str(v).encode()) for md in got["metadatas"] for v in (md or {}).values()))


@pytest.mark.timeout(300)
def test_a_long_question_is_stored_once_not_in_every_part_of_its_answer(tmp_path, embedder):
    """Every part of a split answer stored the whole question and its segments: a 389 KB file
    with a 130 KB question made a 110 MB store. Now one passage holds it and the others refer
    to it; loaded passages are exactly what the chunker made (question included)."""
    rng = np.random.default_rng(7)
    question, answer = _prose(rng, 24_000), _prose(rng, 48_000)
    text = (f"Interviewer: {question}\n\nWitness: {answer}\n\nOther Witness: {_prose(rng, 3_000)}\n\n"
            f"Interviewer: And the buses?\n\nWitness: They run on time.\n")
    src = tmp_path / "in" / "long.txt"
    src.parent.mkdir()
    src.write_text(text, encoding="utf-8")
    settings = load_settings(store=tmp_path / "store")
    report = ingest([src.parent], settings, embedder=embedder)
    assert not report.failed

    expected = chunk_transcript(parse_bytes(src.read_bytes(), "long.txt", ".txt"), embedder.count_tokens, embedder.max_tokens)
    sharing = [p for p in expected if p.turns[0] == 0]  # the answers to the long question
    assert len(sharing) > 40 and len({p.turns[1] for p in sharing}) == 2  # many parts, two answers
    assert all(len(p.question) > 24_000 for p in sharing)
    store = Store(settings)
    stored = _stored_bytes(store._passages) + _stored_bytes(store._manifest)
    size = src.stat().st_size
    # the source text (kept once, in the manifest), the answers once, the question once, and per
    # part its embedded question (at most 96 tokens) and layout; copying the question: 17 times
    assert stored < 3 * size, (stored, size)

    for loaded in (store.all_passages()[0], store.all_passages("long.txt")[0]):
        assert [p.to_dict() for p in loaded] == [p.to_dict() for p in expected]
        assert [p.question_segments for p in loaded] == [p.question_segments for p in expected]
        assert [p.segments for p in loaded] == [p.segments for p in expected]
        assert [p.embed_text for p in loaded] == [p.embed_text for p in expected]
