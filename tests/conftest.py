"""Shared fixtures. Everything is real: the bundled model, embedded Chroma in temporary folders.

The only fake in the suite is the chat model standing in for a hosted LLM: see tests/fakes.py.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")

ROOT = Path(__file__).resolve().parent.parent
# Everything the suite needs is in the repository: the seed interview as received (tests/data), the
# development set (eval/). Only optional tests read ../shared (the training split), and skip when
# it is absent.
SHARED = ROOT.parent / "shared" / "data"
SEED = ROOT / "tests" / "data" / "nhs-impact-amar-shah-interview.txt"
DEV = ROOT / "eval" / "qmsum-committee-val"
CORPUS = ROOT / "corpus"


@pytest.fixture(autouse=True)
def _isolated_settings(monkeypatch, tmp_path_factory):
    """No RAG_* variable or rag.toml from the developer's shell leaks into a test; server-mode
    snapshots (rag/_snapshot.py) go to a temporary folder, not the user's cache."""
    for key in list(os.environ):
        if key.startswith("RAG_"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="session")
def embedder():
    from rag._embed import Embedder

    return Embedder("all-MiniLM-L6-v2")


@pytest.fixture
def settings(tmp_path):
    from rag import load_settings

    return load_settings(store=tmp_path / "store")


@pytest.fixture(scope="session")
def seed_store(tmp_path_factory, embedder):
    """A store with the demo corpus (the seed interview with front matter), built once."""
    from rag import ingest, load_settings

    s = load_settings(store=tmp_path_factory.mktemp("seed") / "store")
    report = ingest([CORPUS], s, embedder=embedder)
    assert not report.failed
    return s


@pytest.fixture(scope="session")
def dev_store(tmp_path_factory, embedder):
    """A store with the six development hearings, built once (about a minute on 2 cores)."""
    from rag import ingest, load_settings

    s = load_settings(store=tmp_path_factory.mktemp("dev") / "store")
    report = ingest([DEV / "transcripts"], s, embedder=embedder)
    assert not report.failed
    return s


@pytest.fixture
def copy_seed(tmp_path):
    def _copy(name: str = "seed.txt") -> Path:
        dst = tmp_path / "in" / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(SEED, dst)
        return dst

    return _copy
