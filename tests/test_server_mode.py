"""Server mode: the same ingest, stats and chunks against a real `chroma run` on 127.0.0.1."""

from __future__ import annotations

import json
import shutil

import pytest

import rag._ingest
from conftest import CORPUS, SEED
from rag import StoreUnavailableError, ingest, load_settings
from rag._store import Store
from rag.cli import main
from servers import ChromaServer, free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chroma_url(tmp_path_factory):
    data = tmp_path_factory.mktemp("chroma-server")
    server = ChromaServer(data / "db", free_port(), data / "chroma.log")
    try:
        server.start()
        yield server.url
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _cli_uses_the_session_model(monkeypatch, embedder):
    monkeypatch.setattr(rag._ingest, "Embedder", lambda name: embedder)


def cli_json(capsys, *argv: str):
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert code == 0, err
    return json.loads(out)


def test_ingest_stats_chunks_and_reingest_through_a_server(chroma_url, embedder, capsys, monkeypatch):
    settings = load_settings(chroma_url=chroma_url)
    report = ingest([CORPUS], settings, embedder=embedder)
    assert [(f.transcript, f.status) for f in report.files] == [("nhs-impact-amar-shah-interview.txt", "added")]

    data = cli_json(capsys, "stats", "--chroma-url", chroma_url)
    assert data["store"] == chroma_url
    (t,) = data["transcripts"]
    assert t["transcript"] == "nhs-impact-amar-shah-interview.txt"
    assert sorted((s["name"], s["role"]) for s in t["speakers"]) == [("Amar Shah", "interviewee"), ("PP", "interviewer")]
    assert t["units_by_kind"] == {"introduction": 1, "answer": 6, "comment": 1}

    rows = cli_json(capsys, "chunks", "--chroma-url", chroma_url)
    source = (CORPUS / "nhs-impact-amar-shah-interview.txt").read_text(encoding="utf-8")
    assert len(rows) == t["passages"] == report.files[0].passages
    for r in rows:
        assert r["text"] in source[r["start_char"] : r["end_char"]], r["chunk_id"]
    assert {r["kind"] for r in rows} == {"introduction", "answer", "comment"}

    # the same folder again: nothing embedded, reported unchanged (also through the CLI)
    calls = []
    original = embedder.encode

    def counting(texts, *a, **k):
        calls.append(len(texts))
        return original(texts, *a, **k)

    monkeypatch.setattr(embedder, "encode", counting)
    again = ingest([CORPUS], settings, embedder=embedder)
    code = main(["ingest", str(CORPUS), "--chroma-url", chroma_url])
    out, err = capsys.readouterr()
    assert [f.status for f in again.files] == ["unchanged"]
    assert sum(calls) == 0
    assert code == 0 and out.startswith("unchanged") and "Traceback" not in out + err


def test_update_and_prune_through_a_server(chroma_url, embedder, tmp_path):
    settings = load_settings(chroma_url=chroma_url)
    folder = tmp_path / "in"
    folder.mkdir()
    talk = folder / "talk.txt"
    talk.write_text("PP: What worries you?\nAS: That the framework is taken for the work itself.\n")
    shutil.copy(SEED, folder / "seed.txt")
    first = ingest([folder], settings, embedder=embedder)
    assert sorted(f.status for f in first.files) == ["added", "added"]

    talk.write_text("PP: What worries you?\nAS: That we stop learning from each other.\n")
    (folder / "seed.txt").unlink()
    report = ingest([folder], settings, embedder=embedder, prune=True)
    statuses = {f.transcript: f.status for f in report.files}
    assert statuses["talk.txt"] == "updated" and statuses["seed.txt"] == "removed"
    store = Store(settings)
    passages, _ = store.all_passages("talk.txt")
    assert [p.text for p in passages] == ["That we stop learning from each other."]
    assert "seed.txt" not in store.manifest()
    # no stale version left in the server's collection
    assert store.count() == sum(info.n_passages for info in store.manifest().values())


def test_an_unreachable_server_is_a_clear_error(capsys):
    port = free_port()  # nothing listens there
    code = main(["stats", "--chroma-url", f"http://127.0.0.1:{port}"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "cannot reach the Chroma server" in err and "Traceback" not in out + err
    with pytest.raises(StoreUnavailableError):
        Store(load_settings(chroma_url=f"http://127.0.0.1:{port}"))
