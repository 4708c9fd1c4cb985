"""The Engine's in-memory view of the store (passages, BM25 index, speakers) follows the store when
another process writes to it: ingest A, ask through an Engine, run `rag ingest B` (and a changed A)
in a subprocess against the same store, ask the same Engine again and find B's passages (and A's
new text, not its old one). Embedded, and against a real `chroma run` server.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag import Engine, ingest, load_settings
from servers import chroma_server  # noqa: F401  (a fixture)

RAG = Path(sys.executable).parent / "rag"

A = """---
title: The zeppelin hangar
speakers:
  IV: {name: Iris Vance, role: interviewer}
  OB: {name: Otto Brandt, role: interviewee}
---
IV: How did you come to restore the zeppelin hangar?
OB: The zeppelin hangar was derelict when we bought it; we replaced the riveted girders one by one over four winters.
IV: What was the hardest part of the hangar work?
OB: Finding a foundry that could still cast the old riveted girders to the original pattern.
"""

A_CHANGED = A.replace("over four winters", "over eleven summers with a volunteer crew")

B = """---
title: The lighthouse cat
speakers:
  IV: {name: Iris Vance, role: interviewer}
  MK: {name: Maud Kerrigan, role: interviewee}
---
IV: Who kept the lighthouse company during the storms?
MK: Our marmalade cat, Saffron, slept on the lamp-room stairs through every gale and never missed a supper of sardines.
IV: Did the lighthouse ever lose its light?
MK: Only once, when the paraffin froze solid in the January blizzard and we lit hurricane lanterns instead.
"""


@pytest.fixture
def chroma_url(chroma_server) -> str:
    return chroma_server.url


def rag_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False")
    return subprocess.run([str(RAG), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("mode", ["embedded", pytest.param("server", marks=pytest.mark.slow)])
def test_engine_sees_what_another_process_ingests(mode, tmp_path, embedder, request):
    files = tmp_path / "in"
    files.mkdir()
    (files / "zeppelin.txt").write_text(A, encoding="utf-8")
    (files / "lighthouse.txt").write_text(B, encoding="utf-8")
    if mode == "server":
        url = request.getfixturevalue("chroma_url")
        settings = load_settings(chroma_url=url)
        where = ["--chroma-url", url]
    else:
        settings = load_settings(store=tmp_path / "store")
        where = ["--store", str(settings.store)]

    report = ingest([files / "zeppelin.txt"], settings, embedder=embedder)
    assert not report.failed
    engine = Engine(settings, embedder=embedder)
    before = engine.ask("Who restored the zeppelin hangar?")
    assert not before.abstained and before.retrieved[0].passage.transcript == "zeppelin.txt"
    assert set(engine.transcripts()) == {"zeppelin.txt"}
    old_view = engine.index()
    assert not any(p.transcript == "lighthouse.txt" for p in old_view.passages)
    assert "saffron" not in old_view.vocab

    # another process adds B and changes A
    (files / "zeppelin.txt").write_text(A_CHANGED, encoding="utf-8")
    proc = rag_cli("ingest", str(files / "lighthouse.txt"), str(files / "zeppelin.txt"), *where, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    time.sleep(engine.refresh_seconds + 0.2)  # the Engine checks the store at most once a refresh period

    view = engine.index()
    assert view is not old_view and view.fingerprint != old_view.fingerprint
    assert {p.transcript for p in view.passages} == {"zeppelin.txt", "lighthouse.txt"}
    assert set(engine.transcripts()) == {"zeppelin.txt", "lighthouse.txt"}
    assert any(s.name == "Maud Kerrigan" for s in view.corpus.speakers)

    # dense and lexical both find B: a rare word only B has, and a paraphrase
    cat = engine.ask("What was the cat called that slept on the lamp-room stairs?")
    assert not cat.abstained, cat.text
    assert cat.retrieved[0].passage.transcript == "lighthouse.txt"
    assert "Saffron" in cat.text
    lexical = engine.retrieve("paraffin blizzard hurricane lanterns")[2]
    assert lexical[0].passage.transcript == "lighthouse.txt" and "paraffin" in lexical[0].passage.text
    named = engine.ask("What did Kerrigan say about the storms?")  # a speaker only B has, by surname
    assert named.speakers == ["Maud Kerrigan"]
    assert named.retrieved[0].passage.speaker == "Maud Kerrigan"

    # A's new version is what is searched and quoted; its old text is gone from the view
    texts = " ".join(p.text for p in view.passages if p.transcript == "zeppelin.txt")
    assert "eleven summers" in texts and "four winters" not in texts
    changed = engine.ask("How long did replacing the riveted girders take?")
    assert changed.retrieved[0].passage.transcript == "zeppelin.txt"
    assert "four winters" not in " ".join(r.passage.text for r in changed.retrieved)
