"""A real Chroma server (`chroma run` from the venv) on 127.0.0.1: ingest and ask through it, stop it
and get the clear StoreUnavailableError, start it again on the same port and folder and ask through
the very same Engine, which must answer again without being recreated.
"""

from __future__ import annotations

import time

import pytest

from conftest import CORPUS
from servers import chroma_server, heartbeat  # noqa: F401  (chroma_server is a fixture)
from rag import Engine, StoreUnavailableError, ingest, load_settings
from rag.cli import main

pytestmark = pytest.mark.slow

QUESTION = "What can we learn from Bangladesh?"


def _bangladesh(answer) -> None:
    assert not answer.abstained, answer.text
    assert answer.citations, answer.text
    assert "Bangladesh" in answer.text
    assert answer.citations[0].passage.speaker == "Amar Shah"


def test_ingest_ask_stop_restart_same_engine(chroma_server, monkeypatch, embedder, capsys):
    monkeypatch.setenv("RAG_CHROMA_URL", chroma_server.url)
    settings = load_settings()
    assert settings.chroma_url == chroma_server.url
    assert load_settings(chroma_url=chroma_server.url).chroma_url == chroma_server.url

    report = ingest([CORPUS], settings, embedder=embedder)
    assert not report.failed and report.summary()["added"] == 1

    engine = Engine(settings, embedder=embedder)
    first = engine.ask(QUESTION)
    _bangladesh(first)

    # the server goes away: a clear error that names the server and says what to do
    chroma_server.stop()
    assert not heartbeat(chroma_server.url)
    for wait in (0.0, 1.2):  # with the store view still fresh, and once it is due for a check
        time.sleep(wait)
        with pytest.raises(StoreUnavailableError) as info:
            engine.ask(QUESTION)
        err = info.value
        assert chroma_server.url in str(err)
        assert err.help_message == StoreUnavailableError.help_message
        assert "chroma run" in err.help_message and "RAG_CHROMA_URL" in err.help_message

    # a fresh command line says the same, without a traceback
    code = main(["ask", QUESTION, "--chroma-url", chroma_server.url])
    out, errout = capsys.readouterr()
    assert code == 1
    assert "Traceback" not in out + errout
    assert chroma_server.url in errout and "chroma run" in errout

    # back on the same port and folder: the same Engine answers again, first time
    chroma_server.start()
    again = engine.ask(QUESTION)
    _bangladesh(again)
    assert [c.passage.chunk_id for c in again.citations] == [c.passage.chunk_id for c in first.citations]
    assert engine.transcripts().keys() == {"nhs-impact-amar-shah-interview.txt"}
