"""A store written by an earlier chunker version (before an upgrade of rag): reading it says so
and what to do, ingesting again reads the transcripts with this version, and the earlier copy is
removed only once every transcript in it is stored by this version."""

from __future__ import annotations

import pytest

from rag import ingest, load_settings
from rag import _store
from rag._errors import StoreMissingError
from rag._settings import CHUNKER_VERSION

TALKS = {
    "one.txt": "Q: What did you build?\n\nA: A bridge across the river, in two years.\n",
    "two.txt": "Q: Where did you grow up?\n\nA: In a fishing village on the west coast.\n",
}


def _folder(tmp_path):
    folder = tmp_path / "talks"
    folder.mkdir(exist_ok=True)
    for name, text in TALKS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _versions(settings):
    """The chunker versions the store folder holds collections of (read without opening a Store,
    which would create this version's)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(path=str(settings.store), settings=ChromaSettings(anonymized_telemetry=False))
    names = [c if isinstance(c, str) else c.name for c in client.list_collections()]
    return sorted({v for n in names if (v := _store._version_of(n, settings.model)) is not None})


@pytest.fixture
def old_store(tmp_path, embedder, monkeypatch):
    """Both talks ingested as an earlier chunker version."""
    settings = load_settings(store=tmp_path / "store")
    with monkeypatch.context() as m:
        m.setattr(_store, "CHUNKER_VERSION", CHUNKER_VERSION - 1)
        assert not ingest([_folder(tmp_path)], settings, embedder=embedder).failed
    assert _versions(settings) == [CHUNKER_VERSION - 1]
    assert [d for d in (settings.store / "snapshots").iterdir() if f"_c{CHUNKER_VERSION - 1}-" in d.name]
    return settings


def test_reading_a_store_of_an_earlier_version_says_to_ingest_again(old_store):
    with pytest.raises(StoreMissingError) as err:
        _store.Store(old_store)
    assert f"2 transcript(s) read by an earlier version of rag (chunker version {CHUNKER_VERSION - 1}" in str(err.value)
    assert "rag ingest" in err.value.help_message


def test_the_earlier_copy_is_kept_until_every_transcript_is_read_again(old_store, tmp_path, embedder, capsys):
    report = ingest([_folder(tmp_path) / "one.txt"], old_store, embedder=embedder)
    assert any("1 of the 2 transcript(s) stored by chunker version" in n for n in report.notes)
    assert _versions(old_store) == [CHUNKER_VERSION - 1, CHUNKER_VERSION]
    assert _store.Store(old_store).earlier_copies() == {CHUNKER_VERSION - 1: (2, 1)}
    from rag.cli import main

    assert main(["stats", "--store", str(old_store.store)]) == 0
    assert f"note: 1 transcript(s) stored by an earlier version of rag (chunker version {CHUNKER_VERSION - 1})" in capsys.readouterr().out
    report = ingest([_folder(tmp_path)], old_store, embedder=embedder)
    assert any(f"removed the earlier copy of 2 transcript(s) stored by chunker version {CHUNKER_VERSION - 1}" in n
               for n in report.notes)
    assert _versions(old_store) == [CHUNKER_VERSION]
    # and the earlier version's query-time snapshots with them
    assert [d.name for d in (old_store.store / "snapshots").iterdir() if f"_c{CHUNKER_VERSION - 1}-" in d.name] == []
    assert sorted(_store.Store(old_store).manifest()) == ["one.txt", "two.txt"]
