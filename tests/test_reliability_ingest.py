"""Ingest defects of issue 14 (points 2, 6 and 8), each a repro on a real store and the real model.

2. One bad file name or value must not abort the ingest or lose the good files of its write group.
6. Silent data loss: one id from two places replaced the first; a prune of an empty, unsupported
   or unmounted folder removed every transcript.
8. Links inside a folder to files outside it (secrets) were ingested and quoted back.

Every case is in docs/RELIABILITY.md ("Ingest: names, sources, prune and links").
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import rag._ingest
from rag import ingest
from rag._store import Store
from rag.cli import main

GOOD = "Interviewer: What do you do on weekends?\n\nGuest: I walk in the hills and read history books.\n"
OTHER = "Interviewer: Where did you grow up?\n\nGuest: In a fishing town on the north coast, by the harbour.\n"
THIRD = "Interviewer: What did you study?\n\nGuest: Geology first, then the history of mining towns.\n"
SECRET = "aws_access_key_id = AKIAEXAMPLEKEY0000000\naws_secret_access_key = wJalrXUtnFEMIexampleSECRETkey\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def consistent(settings) -> dict[str, list[str]]:
    """Every transcript has exactly the passages its manifest record counts, and no passage
    belongs to a transcript the manifest does not name. Returns {id: passage texts}."""
    store = Store(settings)
    manifest = store.manifest()
    passages, _ = store.all_passages()
    per: dict[str, list[str]] = {}
    for p in passages:
        per.setdefault(p.transcript, []).append(p.text)
    assert {t: len(v) for t, v in per.items()} == {t: i.n_passages for t, i in manifest.items()}
    assert store.count() == sum(i.n_passages for i in manifest.values())  # no orphan, no stale version
    return per


def by_name(report) -> dict[str, object]:
    return {r.transcript or Path(r.path).name: r for r in report.files}


@pytest.fixture
def cli_model(monkeypatch, embedder):
    """`rag ingest` builds its own Embedder: hand it the session's (the same real model)."""
    monkeypatch.setattr(rag._ingest, "Embedder", lambda name: embedder)


# ----------------------------------------------------------------------------- 2: isolation


def test_a_file_name_that_is_not_utf8_fails_alone(tmp_path, settings, embedder, cli_model, capsys):
    folder = tmp_path / "in"
    write(folder / "good.txt", GOOD)
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.txt"), "wb") as fh:
        fh.write(GOOD.encode())
    for _ in range(2):  # the same on every rerun
        report = ingest([folder], settings, embedder=embedder)
        results = by_name(report)
        assert results["good.txt"].status in ("added", "unchanged")
        bad = results["caf\\xe9.txt"]  # named, with the byte shown as an escape
        assert bad.status == "failed" and "not valid UTF-8" in bad.reason
        assert bad.path.endswith("caf\\xe9.txt")
        json.dumps(bad.to_dict(), ensure_ascii=False).encode("utf-8")  # printable
        assert list(consistent(settings)) == ["good.txt"]
    code = main(["ingest", str(folder), "--store", str(settings.store)])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in out + err
    assert "caf\\xe9.txt: file or folder name is not valid UTF-8" in out and "unchanged good.txt" in out


def test_a_lone_surrogate_in_front_matter_fails_alone(tmp_path, settings, embedder):
    folder = tmp_path / "in"
    write(folder / "good.txt", GOOD)
    write(folder / "other.txt", OTHER)
    write(folder / "fm.md", '---\ntitle: "F \\ud800"\n---\n' + THIRD)
    for _ in range(2):
        results = by_name(ingest([folder], settings, embedder=embedder))
        assert {t: r.status for t, r in results.items()}.keys() == {"good.txt", "other.txt", "fm.md"}
        assert results["good.txt"].status in ("added", "unchanged")
        assert results["other.txt"].status in ("added", "unchanged")
        fm = results["fm.md"]
        if fm.status == "failed":  # refused by ingest, the field named
            assert "invalid character" in fm.reason and "title" in fm.reason
            assert sorted(consistent(settings)) == ["good.txt", "other.txt"]
        else:  # or the parser replaced the character: stored whole, without it
            assert fm.status in ("added", "unchanged")
            assert "\ud800" not in Store(settings).manifest()["fm.md"].title
            assert sorted(consistent(settings)) == ["fm.md", "good.txt", "other.txt"]


def test_a_lone_surrogate_in_json_text_fails_alone(tmp_path, settings, embedder):
    folder = tmp_path / "in"
    write(folder / "good.txt", GOOD)
    write(folder / "turns.json", json.dumps([{"speaker": "Host", "text": "Why the hills?"},
                                             {"speaker": "Guest", "text": "Because \ud800 of the air."}]))
    results = by_name(ingest([folder], settings, embedder=embedder))
    assert results["good.txt"].status == "added"
    r = results["turns.json"]
    if r.status == "failed":
        assert "invalid character" in r.reason
        assert sorted(consistent(settings)) == ["good.txt"]
    else:  # the parser replaces a lone surrogate in JSON text with U+FFFD
        assert r.status == "added"
        assert not any("\ud800" in t for ts in consistent(settings).values() for t in ts)


class _FailingManifest:
    """Chroma's manifest collection, failing every write with an error that is not the store's
    (not a full disk or an unreachable server): the passages of a write group are in, the switch
    to them is not (a real half-written group)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def upsert(self, **kwargs):
        raise RuntimeError("simulated write failure")


def test_a_group_write_that_fails_is_retried_file_by_file(tmp_path, settings, embedder, monkeypatch):
    folder = tmp_path / "in"
    write(folder / "a.txt", GOOD)
    write(folder / "bad.txt", OTHER)
    write(folder / "c.txt", THIRD)
    real = Store.write_transcripts
    calls: list[list[str]] = []

    def flaky(self, items):
        ids = [t.id for t, *_ in items]
        calls.append(ids)
        if "bad.txt" not in ids:
            return real(self, items)
        inner, self._manifest = self._manifest, _FailingManifest(self._manifest)
        try:
            return real(self, items)
        finally:
            self._manifest = inner

    monkeypatch.setattr(Store, "write_transcripts", flaky)
    results = by_name(ingest([folder], settings, embedder=embedder))
    assert calls == [["a.txt", "bad.txt", "c.txt"], ["a.txt"], ["bad.txt"], ["c.txt"]]
    assert (results["a.txt"].status, results["c.txt"].status) == ("added", "added")
    assert results["bad.txt"].status == "failed" and "could not be stored" in results["bad.txt"].reason
    assert "simulated write failure" in results["bad.txt"].reason
    assert sorted(consistent(settings)) == ["a.txt", "c.txt"]  # bad.txt's passages were taken out again
    monkeypatch.setattr(Store, "write_transcripts", real)
    results = by_name(ingest([folder], settings, embedder=embedder))
    assert [results[n].status for n in ("a.txt", "bad.txt", "c.txt")] == ["unchanged", "added", "unchanged"]
    assert sorted(consistent(settings)) == ["a.txt", "bad.txt", "c.txt"]


# ----------------------------------------------------------------------------- 6a: one id, two places


def test_the_same_id_from_another_folder_is_refused_not_replaced(tmp_path, settings, embedder):
    a = write(tmp_path / "projA" / "interview.txt", GOOD)
    b = write(tmp_path / "projB" / "interview.txt", OTHER)
    assert by_name(ingest([a.parent], settings, embedder=embedder))["interview.txt"].status == "added"
    r = by_name(ingest([b.parent], settings, embedder=embedder))["interview.txt"]
    assert r.status == "failed"
    assert str(a) in r.reason and "rename" in r.reason and "--replace-from-elsewhere" in r.reason
    assert any("hills" in t for t in consistent(settings)["interview.txt"])  # projA's is still there
    # given directly (as the app's uploads are): the same rule
    c = write(tmp_path / "uploads" / "interview.txt", THIRD)
    assert by_name(ingest([c], settings, embedder=embedder))["interview.txt"].status == "failed"
    # its own folder again: an ordinary update
    write(a, GOOD + "\nInterviewer: And on rainy days?\n\nGuest: I read more history books.\n")
    assert by_name(ingest([a.parent], settings, embedder=embedder))["interview.txt"].status == "updated"
    # replacing on purpose
    r = by_name(ingest([b.parent], settings, embedder=embedder, replace_from_elsewhere=True))["interview.txt"]
    assert r.status == "updated"
    assert any("harbour" in t for t in consistent(settings)["interview.txt"])
    # now projB is its source: projA is the one refused
    assert by_name(ingest([a.parent], settings, embedder=embedder))["interview.txt"].status == "failed"
    # the recorded source moved away: the file that now has the id takes it
    b.unlink()
    assert by_name(ingest([a.parent], settings, embedder=embedder))["interview.txt"].status == "updated"


def test_identical_content_from_elsewhere_is_unchanged(tmp_path, settings, embedder):
    a = write(tmp_path / "projA" / "interview.txt", GOOD)
    b = write(tmp_path / "projB" / "interview.txt", GOOD)
    ingest([a.parent], settings, embedder=embedder)
    assert by_name(ingest([b.parent], settings, embedder=embedder))["interview.txt"].status == "unchanged"


def test_a_store_without_recorded_sources_adopts_them(tmp_path, settings, embedder):
    a = write(tmp_path / "projA" / "interview.txt", GOOD)
    b = write(tmp_path / "projB" / "interview.txt", OTHER)
    ingest([a.parent], settings, embedder=embedder)
    (settings.store / "sources.json").unlink()  # a store written before sources were recorded
    assert by_name(ingest([a.parent], settings, embedder=embedder))["interview.txt"].status == "unchanged"
    assert by_name(ingest([b.parent], settings, embedder=embedder))["interview.txt"].status == "failed"


# ----------------------------------------------------------------------------- 6b: prune


@pytest.fixture
def two_stored(tmp_path, settings, embedder):
    folder = tmp_path / "in"
    write(folder / "a.txt", GOOD)
    write(folder / "b.txt", OTHER)
    ingest([folder], settings, embedder=embedder)
    return folder


@pytest.mark.parametrize("given", ["empty", "unsupported", "unmounted"])
def test_prune_of_a_folder_without_transcripts_removes_nothing(given, tmp_path, settings, embedder, two_stored):
    folder = tmp_path / given
    folder.mkdir()
    if given == "unsupported":
        (folder / "notes.pdf").write_bytes(b"%PDF-1.4")
        (folder / ".hidden.txt").write_text(GOOD)
    report = ingest([folder], settings, prune=True, embedder=embedder)
    assert [r.status for r in report.files] == ["failed"]
    reason = report.files[0].reason
    assert "--prune refused" in reason and "no transcript file" in reason and str(folder) in reason
    assert "--allow-empty" in reason and "nothing was removed" in reason
    assert sorted(consistent(settings)) == ["a.txt", "b.txt"]
    # on purpose
    report = ingest([folder], settings, prune=True, allow_empty=True, embedder=embedder)
    assert sorted((r.transcript, r.status) for r in report.files) == [("a.txt", "removed"), ("b.txt", "removed")]
    assert consistent(settings) == {}


def test_prune_that_would_remove_every_transcript_is_refused(tmp_path, settings, embedder, two_stored):
    other = tmp_path / "other"
    write(other / "c.txt", THIRD)
    report = ingest([other], settings, prune=True, embedder=embedder)
    results = by_name(report)
    assert results["c.txt"].status == "added"  # the ingest itself goes on
    refused = [r for r in report.files if r.status == "failed"]
    assert len(refused) == 1 and "would remove all 2 transcripts" in refused[0].reason
    assert sorted(consistent(settings)) == ["a.txt", "b.txt", "c.txt"]
    # an ordinary prune still works: one of three gone
    (two_stored / "b.txt").unlink()
    report = ingest([two_stored, other], settings, prune=True, embedder=embedder)
    assert [(r.transcript, r.status) for r in report.files if r.status == "removed"] == [("b.txt", "removed")]
    assert sorted(consistent(settings)) == ["a.txt", "c.txt"]


# ----------------------------------------------------------------------------- 8: links


def test_links_to_files_outside_the_folder_are_not_followed(tmp_path, settings, embedder):
    secret = write(tmp_path / "home" / ".aws" / "credentials", SECRET)
    write(tmp_path / "home" / "diary" / "day.txt", SECRET)
    folder = tmp_path / "in"
    write(folder / "good.txt", GOOD)
    write(folder / "sub" / "real.txt", OTHER)
    (folder / "notes.txt").symlink_to(secret)
    (folder / "diary").symlink_to(tmp_path / "home" / "diary", target_is_directory=True)
    (folder / "alias.txt").symlink_to(folder / "sub" / "real.txt")  # inside: followed
    report = ingest([folder], settings, embedder=embedder)
    results = by_name(report)
    assert results["good.txt"].status == "added"
    # the link inside is followed: it and the file it points at are one transcript, the other a duplicate
    assert sorted((results["alias.txt"].status, results["sub/real.txt"].status)) == ["added", "duplicate"]
    notes = results["notes.txt"]
    assert notes.status == "failed" and "outside the folders given" in notes.reason and str(secret) in notes.reason
    diary = [r for r in report.failed if r.path.endswith("diary")]
    assert len(diary) == 1 and "outside the folders given" in diary[0].reason
    stored = consistent(settings)
    assert sorted(stored) == ["alias.txt", "good.txt"]  # the link comes first in the folder's order
    assert not any("SECRET" in t or "AKIA" in t for texts in stored.values() for t in texts)
    # a link between two folders given is inside them; a file given directly is read as asked
    other = tmp_path / "other"
    write(other / "x.txt", THIRD)
    (folder / "x-link.txt").symlink_to(other / "x.txt")
    results = by_name(ingest([folder, other], settings, embedder=embedder))
    assert results["x-link.txt"].status == "added"


def test_the_cli_refuses_an_emptying_prune_and_takes_allow_empty(tmp_path, settings, embedder, two_stored, cli_model, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    store = ["--store", str(settings.store)]
    assert main(["ingest", "--prune", str(empty), *store]) == 1
    out = capsys.readouterr()
    assert "--prune refused" in out.out + out.err and "--allow-empty" in out.out + out.err
    assert sorted(consistent(settings)) == ["a.txt", "b.txt"]
    assert main(["ingest", "--prune", "--allow-empty", str(empty), *store]) == 0
    assert consistent(settings) == {}


def test_the_cli_replaces_from_elsewhere_only_when_told(tmp_path, settings, embedder, cli_model, capsys):
    store = ["--store", str(settings.store)]
    write(tmp_path / "projA" / "interview.txt", GOOD)
    write(tmp_path / "projB" / "interview.txt", OTHER)
    assert main(["ingest", str(tmp_path / "projA"), *store]) == 0
    assert main(["ingest", str(tmp_path / "projB"), *store]) == 1
    assert "--replace-from-elsewhere" in "".join(capsys.readouterr())
    assert consistent(settings)["interview.txt"] == [GOOD.split("Guest: ")[1].strip()]
    assert main(["ingest", "--replace-from-elsewhere", str(tmp_path / "projB"), *store]) == 0
    assert consistent(settings)["interview.txt"] == [OTHER.split("Guest: ")[1].strip()]


# ----------------------------------------------------------------------------- duplicates


def test_the_same_file_under_two_names_is_indexed_once(tmp_path, settings, embedder):
    folder = tmp_path / "in"
    write(folder / "a.txt", GOOD)
    write(folder / "copy of a.txt", GOOD)
    report = ingest([folder], settings, embedder=embedder)
    results = by_name(report)
    assert results["a.txt"].status == "added"
    dup = results["copy of a.txt"]
    assert dup.status == "duplicate" and "the same content as a.txt" in dup.reason and not report.failed
    assert sorted(consistent(settings)) == ["a.txt"]
    # later, from elsewhere (an upload under a third name): still a duplicate
    report = ingest([write(tmp_path / "up" / "third.txt", GOOD)], settings, embedder=embedder)
    assert [(r.transcript, r.status) for r in report.files] == [("third.txt", "duplicate")]
    assert sorted(consistent(settings)) == ["a.txt"]


def test_a_file_renamed_in_place_is_kept_under_its_new_name_by_prune(tmp_path, settings, embedder):
    folder = tmp_path / "in"
    write(folder / "a.txt", GOOD)
    write(folder / "b.txt", OTHER)
    ingest([folder], settings, embedder=embedder)
    (folder / "a.txt").rename(folder / "renamed.txt")
    report = ingest([folder], settings, prune=True, embedder=embedder)
    assert {r.transcript: r.status for r in report.files} == {"renamed.txt": "added", "b.txt": "unchanged", "a.txt": "removed"}
    assert sorted(consistent(settings)) == ["b.txt", "renamed.txt"]


def test_the_cli_reports_a_duplicate_and_exits_0(tmp_path, settings, cli_model, capsys):
    folder = tmp_path / "in"
    write(folder / "a.txt", GOOD)
    write(folder / "b.txt", GOOD)
    assert main(["ingest", str(folder), "--store", str(settings.store)]) == 0
    out = capsys.readouterr().out
    assert "duplicate b.txt: the same content as a.txt" in out


def test_garbage_collection_is_paused_only_while_a_file_is_parsed(tmp_path, settings, embedder, monkeypatch):
    """Ingest pauses cyclic garbage collection while it parses and chunks a file (each full
    collection walks the model's objects: docs/BENCHMARKS.md section 7); it must come back on
    after every file, one that fails to parse included, and stay off if the caller had it off."""
    import gc

    seen = []
    parse = rag._ingest.parse_bytes

    def spy(*a, **k):
        seen.append(gc.isenabled())
        return parse(*a, **k)

    monkeypatch.setattr(rag._ingest, "parse_bytes", spy)
    write(tmp_path / "in" / "good.txt", GOOD)
    write(tmp_path / "in" / "bad.json", '{"turns": 5}')
    report = ingest([tmp_path / "in"], settings, embedder=embedder)
    assert [r.status for r in sorted(report.files, key=lambda r: r.transcript)] == ["failed", "added"]
    assert seen == [False, False] and gc.isenabled()
    gc.disable()
    try:
        write(tmp_path / "in" / "good.txt", OTHER)
        ingest([tmp_path / "in"], settings, embedder=embedder)
        assert not gc.isenabled()
    finally:
        gc.enable()
