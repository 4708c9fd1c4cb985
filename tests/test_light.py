"""rag._light: the numpy BERT forward pass that encodes questions without torch gives
sentence-transformers' vectors, and a process that only answers never imports torch."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from rag._embed import LIGHT_TEXTS, Embedder
from rag._light import LightEncoder, _erf

from conftest import ROOT
from test_bert import LONG, MODEL, TEXTS, _copy_model, _cos, _rewrite


@pytest.fixture(scope="module")
def light() -> LightEncoder:
    enc = LightEncoder.load(str(MODEL))
    assert enc is not None
    return enc


def test_matches_sentence_transformers(light):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(MODEL), device="cpu").encode(TEXTS, normalize_embeddings=True, batch_size=64)
    got = light.encode(TEXTS)
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cos = _cos(got, reference)
    assert cos.min() >= 1 - 1e-5, {TEXTS[i][:40]: float(cos[i]) for i in np.where(cos < 1 - 1e-5)[0]}


def test_padding_does_not_change_vectors(light):
    alone = light.encode(["Why?"])
    batched = light.encode(["Why?", LONG, "word " * 200])
    np.testing.assert_allclose(alone[0], batched[0], atol=1e-5)


def test_erf():
    import math

    xs = np.linspace(-6, 6, 2001)
    assert np.abs(_erf(xs) - np.array([math.erf(x) for x in xs])).max() < 2e-7


def test_unsupported_folder_is_refused(tmp_path):
    folder = _copy_model(tmp_path)
    _rewrite(folder / "config.json", hidden_act="relu")
    assert LightEncoder.load(str(folder)) is None
    assert LightEncoder.load(str(tmp_path / "nothing")) is None


def test_embedder_uses_it_for_a_few_texts_only(embedder):
    e = Embedder("all-MiniLM-L6-v2")
    few = e.encode(["What can we learn from Bangladesh?"])
    assert e._light is not None and e._light is not False
    many = embedder.encode(["What can we learn from Bangladesh?"] * (LIGHT_TEXTS + 1))
    assert float(few[0] @ many[0]) > 0.9999  # torch (bf16 where the CPU has it) and numpy agree


def test_answering_never_imports_torch(seed_store):
    code = (
        "import sys; from rag import Engine, load_settings; "
        f"e = Engine(load_settings(store={str(seed_store.store)!r})); e.warm(); "
        "a = e.ask('What can we learn from Bangladesh?'); b = e.ask('What did Amar Shah say about Bangladesh?'); "
        "assert not a.abstained and a.citations, a.text; "
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules))"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"
