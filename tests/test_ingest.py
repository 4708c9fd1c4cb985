"""Ingest through ``rag.ingest`` and the ``rag`` command line, on real Chroma and the real model.

The embedder is the session's (loaded once); ``rag.cli.main`` is pointed at it too, so that the
command line does not load the model again.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import rag._ingest
from conftest import CORPUS, DEV, SEED
from rag import Engine, ingest, load_settings
from rag._store import Store
from rag.cli import main

GOOD_A = """---
title: Garage years
speakers:
  JD: {name: Jane Doe, role: interviewer}
  RK: {name: Raj Kumar, role: interviewee}
---
JD: How did you start the company?
RK: In a garage, with two friends and a second-hand lathe.
JD: What would you do differently?
RK: Hire an accountant much earlier than we did.
"""

GOOD_B = """PP: What made you take the job?
AS: I wanted to apply improvement methods across the whole health system.
PP: What worries you most?
AS: That people see the framework as the work itself, rather than a support for it.
"""

GOOD_VTT = """WEBVTT

00:00:01.000 --> 00:00:04.000
<v Jane Doe>Why a garage?

00:00:04.500 --> 00:00:08.000
<v Raj Kumar>Because the rent was cheap and the landlord was patient.
"""


@pytest.fixture(autouse=True)
def _cli_uses_the_session_model(monkeypatch, embedder):
    """`rag ingest` builds its own Embedder: hand it the one already loaded (the same real model)."""
    monkeypatch.setattr(rag._ingest, "Embedder", lambda name: embedder)


class CountingEmbedder:
    """The real embedder, counting what it is asked to encode."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls = 0
        self.texts = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode(self, texts, *args, **kwargs):
        self.calls += 1
        self.texts += len(texts)
        return self.inner.encode(texts, *args, **kwargs)


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def cli_json(capsys, *argv: str):
    code, out, _ = cli(capsys, *argv, "--json")
    assert code == 0
    return json.loads(out)


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def stored(settings) -> dict[str, list]:
    passages, _ = Store(settings).all_passages()
    out: dict[str, list] = {}
    for p in passages:
        out.setdefault(p.transcript, []).append(p)
    return out


# ----------------------------------------------------------------------------- the demo corpus


def test_demo_corpus_stats(seed_store, capsys):
    data = cli_json(capsys, "stats", "--store", str(seed_store.store))
    assert [t["transcript"] for t in data["transcripts"]] == ["nhs-impact-amar-shah-interview.txt"]
    t = data["transcripts"][0]
    assert t["title"] == "NHS IMPACT: in conversation with Amar Shah"
    assert sorted((s["name"], s["role"], s["turns"]) for s in t["speakers"]) == [("Amar Shah", "interviewee", 6), ("PP", "interviewer", 6)]
    assert t["units_by_kind"] == {"introduction": 1, "answer": 6, "comment": 1}
    assert t["by_kind"]["answer"] >= 6 and t["by_kind"]["comment"] == 1
    assert data["passages"] == t["passages"] == sum(t["by_kind"].values())
    # and the human-readable form says the same
    code, out, _ = cli(capsys, "stats", "--store", str(seed_store.store))
    assert code == 0 and "6 answer" in out and "1 comment" in out and "Amar Shah" in out


def test_demo_corpus_chunks_fields_and_offsets(seed_store, capsys):
    rows = cli_json(capsys, "chunks", "--store", str(seed_store.store))
    source = (CORPUS / "nhs-impact-amar-shah-interview.txt").read_bytes().decode("utf-8-sig")
    fields = {"chunk_id", "transcript", "kind", "speaker", "role", "question", "question_speaker", "turns", "start_char", "end_char", "text"}
    assert rows and all(fields <= set(r) for r in rows)
    for r in rows:
        assert r["transcript"] == "nhs-impact-amar-shah-interview.txt"
        assert r["chunk_id"].startswith(r["transcript"] + "#t")
        window = source[r["start_char"] : r["end_char"]]
        assert r["text"] in window, r["chunk_id"]
        if r["kind"] == "answer":
            assert (r["speaker"], r["role"], r["question_speaker"]) == ("Amar Shah", "interviewee", "PP")
            assert r["question"] and r["question"].endswith("?")
            first, last = r["turns"]
            assert (first, last) in {(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12)}
            if r.get("part", 0) <= 1:  # the first part's range starts at the question's tag
                assert window.startswith("PP: " + r["question"])
    kinds = [r["kind"] for r in rows]
    assert kinds.count("introduction") == 1 and kinds.count("comment") == 1
    comment = rows[kinds.index("comment")]
    assert comment["speaker"] == "Thomas John Rose"
    # one transcript, by id
    only = cli_json(capsys, "chunks", "nhs-impact-amar-shah-interview.txt", "--store", str(seed_store.store))
    assert [r["chunk_id"] for r in only] == [r["chunk_id"] for r in rows]
    code, _, err = cli(capsys, "chunks", "nope.txt", "--store", str(seed_store.store))
    assert code == 1 and "nope.txt" in err


# ----------------------------------------------------------------------------- incremental


def test_reingest_unchanged_embeds_nothing(tmp_path, embedder, capsys):
    folder = tmp_path / "in"
    shutil.copy(SEED, write(folder / "x.txt", ""))
    write(folder / "b.txt", GOOD_B)
    settings = load_settings(store=tmp_path / "store")
    counting = CountingEmbedder(embedder)
    first = ingest([folder], settings, embedder=counting)
    assert [(f.transcript, f.status) for f in first.files] == [("b.txt", "added"), ("x.txt", "added")]
    # each passage once, and each distinct quotable sentence once (stored with the passages: rag/_derived.py)
    from rag import _derived
    from rag._store import Store

    stored, _ = Store(settings).all_passages()
    sentences = {s for p in stored for s in _derived.sentence_texts(p)}
    assert counting.texts == sum(f.passages for f in first.files) + len(sentences) > len(sentences) > 0

    counting.calls = counting.texts = 0
    again = ingest([folder], settings, embedder=counting)
    assert [(f.transcript, f.status) for f in again.files] == [("b.txt", "unchanged"), ("x.txt", "unchanged")]
    assert [f.passages for f in again.files] == [f.passages for f in first.files]
    assert counting.texts == 0

    code, out, _ = cli(capsys, "ingest", str(folder), "--store", str(settings.store))
    assert code == 0
    assert "unchanged" in out and "b.txt" in out and "x.txt" in out and "0 passages written" in out


def test_changed_file_is_updated_and_old_passages_are_gone(tmp_path, embedder, capsys):
    folder = tmp_path / "in"
    path = write(folder / "talk.txt", GOOD_B)
    settings = load_settings(store=tmp_path / "store")
    ingest([folder], settings, embedder=embedder)
    before = stored(settings)["talk.txt"]
    assert len(before) == 2

    path.write_text(GOOD_B.replace("the whole health system", "every hospital in the region") +
                    "PP: And what gives you hope?\nAS: The people who do this work every day, often unnoticed.\n")
    code, out, _ = cli(capsys, "ingest", str(folder), "--store", str(settings.store))
    assert code == 0 and "updated" in out and "talk.txt" in out
    after = stored(settings)["talk.txt"]
    assert len(after) == 3
    texts = [p.text for p in after]
    assert "I wanted to apply improvement methods across every hospital in the region." in texts
    assert not any("the whole health system" in t for t in texts)
    # no stale version is left behind in Chroma either
    store = Store(settings)
    assert store.count() == 3
    assert store.source_text("talk.txt") == path.read_text()
    report = ingest([folder], settings, embedder=embedder)
    assert [f.status for f in report.files] == ["unchanged"]


def test_prune_removes_a_deleted_files_transcript(tmp_path, embedder, capsys):
    folder = tmp_path / "in"
    write(folder / "a.md", GOOD_A)
    gone = write(folder / "b.txt", GOOD_B)
    settings = load_settings(store=tmp_path / "store")
    ingest([folder], settings, embedder=embedder)
    assert sorted(stored(settings)) == ["a.md", "b.txt"]

    gone.unlink()
    code, out, _ = cli(capsys, "ingest", str(folder), "--store", str(settings.store))  # no --prune: kept
    assert code == 0 and sorted(stored(settings)) == ["a.md", "b.txt"]
    code, out, _ = cli(capsys, "ingest", str(folder), "--prune", "--store", str(settings.store))
    assert code == 0 and "removed" in out and "b.txt" in out
    assert sorted(stored(settings)) == ["a.md"]
    data = cli_json(capsys, "stats", "--store", str(settings.store))
    assert [t["transcript"] for t in data["transcripts"]] == ["a.md"]
    assert Store(settings).count() == len(stored(settings)["a.md"])


def test_prune_is_skipped_when_a_given_path_is_missing(tmp_path, embedder):
    folder = tmp_path / "in"
    write(folder / "a.md", GOOD_A)
    settings = load_settings(store=tmp_path / "store")
    ingest([folder], settings, embedder=embedder)
    report = ingest([tmp_path / "typo"], settings, prune=True, embedder=embedder)
    assert [(f.status, f.reason) for f in report.files] == [("failed", "no such file or folder")]
    assert report.notes and "prune" in report.notes[0]
    assert sorted(stored(settings)) == ["a.md"]


def test_transcript_ids_relative_to_the_folder_or_base_name(tmp_path, embedder, capsys):
    folder = tmp_path / "in"
    write(folder / "a.md", GOOD_A)
    write(folder / "sub" / "deeper" / "b.txt", GOOD_B)
    write(folder / "sub" / "talk.vtt", GOOD_VTT)
    write(folder / "sub" / "notes.pdf", b"%PDF-1.4 not a transcript")  # other suffixes are not read
    write(folder / ".hidden.txt", GOOD_B)
    single = write(tmp_path / "elsewhere" / "single.txt", GOOD_B + "\n")  # not byte-identical: not a duplicate
    settings = load_settings(store=tmp_path / "store")
    report = ingest([folder, single], settings, embedder=embedder)
    assert not report.failed
    assert sorted(f.transcript for f in report.files) == ["a.md", "single.txt", "sub/deeper/b.txt", "sub/talk.vtt"]
    rows = cli_json(capsys, "chunks", "--store", str(settings.store))
    assert sorted({r["transcript"] for r in rows}) == ["a.md", "single.txt", "sub/deeper/b.txt", "sub/talk.vtt"]
    assert any(r["chunk_id"].startswith("sub/deeper/b.txt#t") for r in rows)
    vtt = [r for r in rows if r["transcript"] == "sub/talk.vtt"]
    assert [(r["speaker"], r["question_speaker"], r["start_time"], r["end_time"]) for r in vtt] == [("Raj Kumar", "Jane Doe", 4.5, 8.0)]
    a = [r for r in rows if r["transcript"] == "a.md"]
    assert {(r["speaker"], r["role"], r["question_speaker"], r["title"]) for r in a} == {("Raj Kumar", "interviewee", "Jane Doe", "Garage years")}


def test_two_files_with_one_id_are_reported_not_silently_dropped(tmp_path, embedder):
    one = write(tmp_path / "x" / "talk.txt", GOOD_B)
    two = write(tmp_path / "y" / "talk.txt", GOOD_A)
    settings = load_settings(store=tmp_path / "store")
    report = ingest([one, two, one], settings, embedder=embedder)
    assert [(f.path, f.status) for f in report.files if f.status != "failed"] == [(str(one), "added")]
    assert [(f.path, "same transcript id" in f.reason) for f in report.failed] == [(str(two), True)]


# ----------------------------------------------------------------------------- bad input


def _bad_folder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Good files next to every kind of bad input; returns the folder and {name: reason}."""
    folder = tmp_path / "in"
    write(folder / "good.md", GOOD_A)
    write(folder / "sub" / "good.txt", GOOD_B)
    write(folder / "good.vtt", GOOD_VTT)
    expected = {
        "empty.txt": "empty",
        "blank.txt": "only whitespace",
        "binary.txt": "NUL bytes",
        "undecodable.txt": "undecodable",
        "broken.vtt": "no valid WebVTT cues",
        "broken.srt": "no valid SubRip cues",
        "broken.json": "invalid JSON",
        "shape.json": '"turns" list',
        "fifo.txt": "not a regular file",
        "dangling.txt": "cannot read",
    }
    write(folder / "empty.txt", b"")
    write(folder / "blank.txt", b"  \n\n\t  \r\n")
    write(folder / "binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    write(folder / "undecodable.txt", b"PP: caf\x81\x8d\x8f\x90\x9d?\n" * 3)
    write(folder / "broken.vtt", "WEBVTT\n\n1\n00:00:01.000 -> 00:00:02.000\nhello\n\nno timing here\n")
    write(folder / "broken.srt", "1\n00:00:01,000 --> soon\nhello\n")
    write(folder / "broken.json", '[{"speaker": "A", "text": "unterminated}')
    write(folder / "shape.json", '{"speaker": "A", "text": "not a list of turns"}')
    os.mkfifo(folder / "fifo.txt")  # a path that exists but cannot be read as a file
    (folder / "dangling.txt").symlink_to(folder / "missing.txt")
    (folder / "sub" / "loop").symlink_to(folder)  # a folder link back up: a loop
    return folder, expected


def test_bad_inputs_are_reported_by_name_and_the_good_files_go_in(tmp_path, capsys):
    folder, expected = _bad_folder(tmp_path)
    self_loop = tmp_path / "selfloop.txt"
    self_loop.symlink_to(self_loop)
    store = tmp_path / "store"
    code, out, err = cli(capsys, "ingest", str(folder), str(tmp_path / "does-not-exist"), str(self_loop), "--store", str(store))
    assert code == 1
    lines = out.splitlines()
    for name, reason in expected.items():
        line = next((l for l in lines if l.startswith("failed") and name in l), None)
        assert line is not None, f"{name} not reported:\n{out}"
        assert reason in line, line
    assert any(l.startswith("failed") and "does-not-exist" in l and "no such file" in l for l in lines)
    assert any(l.startswith("failed") and "selfloop.txt" in l and "symbolic links" in l for l in lines)
    assert any(l.startswith("failed") and "loop" in l and "loops back" in l for l in lines)
    for good in ("good.md", "sub/good.txt", "good.vtt"):
        assert any(l.startswith("added") and good in l for l in lines), good
    assert "3 added" in out and "file(s) failed" in err

    # the store holds the good files only, whole
    data = cli_json(capsys, "stats", "--store", str(store))
    assert sorted(t["transcript"] for t in data["transcripts"]) == ["good.md", "good.vtt", "sub/good.txt"]
    rows = cli_json(capsys, "chunks", "--store", str(store))
    assert sorted({r["transcript"] for r in rows}) == ["good.md", "good.vtt", "sub/good.txt"]
    assert data["passages"] == len(rows) == Store(load_settings(store=store)).count()

    # the same run again: the good files are unchanged, the bad ones still reported
    code, out, _ = cli(capsys, "ingest", str(folder), "--store", str(store), "--json")
    report = json.loads(out)
    assert code == 1
    assert report["summary"]["unchanged"] == 3 and report["summary"]["failed"] == len(expected) + 1
    assert all(f["reason"] for f in report["files"] if f["status"] == "failed")


def test_file_over_the_size_limit_is_refused(tmp_path, embedder):
    folder = tmp_path / "in"
    write(folder / "small.txt", GOOD_B)
    shutil.copy(SEED, folder / "seed.txt")  # about 10 KB
    settings = load_settings(store=tmp_path / "store", max_file_mb=0.005)  # 5 KB
    report = ingest([folder], settings, embedder=embedder)
    assert [(f.transcript, f.status) for f in report.files] == [("seed.txt", "failed"), ("small.txt", "added")]
    assert "over the 0.005 MB limit" in report.failed[0].reason
    assert sorted(stored(settings)) == ["small.txt"]


def test_a_failed_file_keeps_its_previous_version(tmp_path, embedder):
    folder = tmp_path / "in"
    path = write(folder / "talk.txt", GOOD_B)
    settings = load_settings(store=tmp_path / "store")
    ingest([folder], settings, embedder=embedder)
    before = [(p.chunk_id, p.text) for p in stored(settings)["talk.txt"]]
    path.write_bytes(b"\x00\x01garbage")
    report = ingest([folder], settings, embedder=embedder, prune=True)
    assert [(f.transcript, f.status) for f in report.files] == [("talk.txt", "failed")]
    assert [(p.chunk_id, p.text) for p in stored(settings)["talk.txt"]] == before


def test_nothing_to_index_is_a_failure_with_a_reason(tmp_path, embedder):
    path = write(tmp_path / "thanks.txt", "Jane Doe: Thank you.\nRaj Kumar: Thank you very much.\nJane Doe: Thank you.\n")
    report = ingest([path], load_settings(store=tmp_path / "store"), embedder=embedder)
    assert [(f.status, "nothing to index" in f.reason) for f in report.files] == [("failed", True)]


# ----------------------------------------------------------------------------- the development hearings


def test_dev_hearings_ingest_with_multi_party_roles(dev_store, capsys):
    names = sorted(p.name for p in (DEV / "transcripts").iterdir())
    data = cli_json(capsys, "stats", "--store", str(dev_store.store))
    assert sorted(t["transcript"] for t in data["transcripts"]) == names
    rows = cli_json(capsys, "chunks", "--store", str(dev_store.store))
    roles = {
        t["transcript"]: {s["name"]: s["role"] for s in t["speakers"]} for t in data["transcripts"]
    }
    answers = [r for r in rows if r["kind"] == "answer"]
    assert len(answers) >= 100
    for r in answers:
        assert roles[r["transcript"]][r["speaker"]] == "interviewee", r["chunk_id"]
        assert r["role"] == "interviewee"
        assert r["question"] and r["question_speaker"], r["chunk_id"]
        assert r["question_speaker"] != r["speaker"], r["chunk_id"]
        assert roles[r["transcript"]][r["question_speaker"]] != "interviewee", r["chunk_id"]
    for name in names:
        mine = [r for r in answers if r["transcript"] == name]
        # several members ask and several witnesses answer in every hearing
        assert len({r["speaker"] for r in mine}) >= 2, name
        assert len({r["question_speaker"] for r in mine}) >= 3, name
        assert sum(1 for role in roles[name].values() if role == "interviewer") >= 3, name
        sources = (DEV / "transcripts" / name).read_text(encoding="utf-8")
        for r in (r for r in rows if r["transcript"] == name):
            assert r["text"].split("\n")[0] in sources[r["start_char"] : r["end_char"]], r["chunk_id"]
    # nobody's courtesy or hand-over is indexed on its own
    assert not any(r["text"].strip().rstrip(".!").lower() in {"thank you", "thank you very much", "thanks"} for r in rows)


def test_an_ingest_that_did_not_finish_is_recovered_by_the_next(tmp_path, embedder):
    """A killed ingest leaves its mark; the next one rebuilds the vector index from the records
    (re-embedding them) before writing, and says so. (The kill itself: test_reliability.py.)"""
    corpus = tmp_path / "c"
    shutil.copytree(CORPUS, corpus)
    settings = load_settings(store=tmp_path / "store")
    first = ingest([corpus], settings, embedder=embedder)
    n = first.summary()["passages"]
    (settings.store / "ingest.unfinished").write_text("1\n")
    report = ingest([corpus], settings, embedder=embedder)
    assert "the last ingest did not finish" in report.notes
    assert any(f"rebuilt the vector index: {n} passages of 1 transcripts" in x for x in report.notes), report.notes
    assert not (settings.store / "ingest.unfinished").exists()
    store = Store(settings)
    assert store.count() == n
    a = Engine(settings, embedder=embedder).ask("What can we learn from Bangladesh?")
    assert not a.abstained and "Bangladesh" in a.citations[0].quote
    # a clean ingest leaves no mark and rebuilds nothing
    again = ingest([corpus], settings, embedder=embedder)
    assert not any("rebuilt" in x for x in again.notes)


def test_a_rebuild_interrupted_before_the_rename_is_finished_on_open(tmp_path, embedder):
    corpus = tmp_path / "c"
    shutil.copytree(CORPUS, corpus)
    settings = load_settings(store=tmp_path / "store")
    ingest([corpus], settings, embedder=embedder)
    store = Store(settings)
    n = store.count()
    name = store._passages.name
    # as if killed between dropping the old collection and renaming its complete copy
    store._passages.modify(name=name + "_rebuild")
    store.reopen()
    assert store._passages.name == name and store.count() == n


def test_files_are_written_in_groups_each_reported_once_written(tmp_path, embedder, monkeypatch):
    """Several files go to Chroma in one write (a group of about rag._ingest._WRITE_GROUP passages);
    every file is reported after its group is written, and an updated file in a later group
    replaces its old passages."""
    monkeypatch.setattr(rag._ingest, "_WRITE_GROUP", 3)
    folder = tmp_path / "in"
    write(folder / "a.md", GOOD_A)
    write(folder / "b.txt", GOOD_B)
    shutil.copy(SEED, write(folder / "c.txt", ""))
    settings = load_settings(store=tmp_path / "store")
    writes: list[list[str]] = []
    real = Store.write_transcripts
    monkeypatch.setattr(Store, "write_transcripts", lambda self, items: (writes.append([t.id for t, *_ in items]), real(self, items))[1])
    counted_when_reported: dict[str, int] = {}
    report = ingest([folder], settings, embedder=embedder,
                    on_file=lambda r: counted_when_reported.setdefault(r.transcript, Store(settings).count()))
    assert [f.status for f in report.files] == ["added"] * 3
    assert [f.passages for f in report.files][:2] == [2, 2]
    assert writes == [["a.md", "b.txt"], ["c.txt"]]  # 2 + 2 passages reach the group size of 3
    # a file is reported once its passages are in the store
    done = 0
    for group in writes:
        done += sum(f.passages for f in report.files if f.transcript in group)
        assert all(counted_when_reported[t] == done for t in group)
    assert Store(settings).count() == sum(f.passages for f in report.files)
    write(folder / "b.txt", GOOD_B + "PP: And what gives you hope?\nAS: The people who do this work every day.\n")
    again = ingest([folder], settings, embedder=embedder)
    assert [f.status for f in again.files] == ["unchanged", "updated", "unchanged"]
    assert Store(settings).count() == sum(f.passages for f in again.files)
    assert len(stored(settings)["b.txt"]) == again.files[1].passages
