"""Ranking features and their fitted weights (rag/_rank.py, rag/_fit.py) and the ranking settings:
small exact cases, synthetic groups for the fit, no store or model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from rag import ConfigError, load_settings
from rag import _fit
from rag._rank import (FEATURES, Candidates, check_weights, fit_weights, reciprocal_ranks, softmax_loss,
                       transcript_feature, weight_vector)


# ---------------------------------------------------------------------------- weights


def test_check_weights_lists_the_valid_features_for_an_unknown_name():
    check_weights({"dense": 1.0, "speaker": 2.0})
    with pytest.raises(ValueError) as err:
        check_weights({"dense": 1.0, "nope": 1.0})
    msg = str(err.value)
    assert "nope" in msg
    assert all(f in msg for f in FEATURES)


def test_weight_vector_follows_the_feature_order_and_missing_features_count_zero():
    w = weight_vector({"speaker": 2.0, "dense": 1.5, "comment": -1.0})
    assert w.shape == (len(FEATURES),)
    assert w.dtype == np.float32
    expected = np.zeros(len(FEATURES), dtype=np.float32)
    expected[FEATURES.index("dense")] = 1.5
    expected[FEATURES.index("speaker")] = 2.0
    expected[FEATURES.index("comment")] = -1.0
    assert np.array_equal(w, expected)
    assert weight_vector({"lexical": 3.0}, ("speaker", "lexical")).tolist() == [0.0, 3.0]
    with pytest.raises(ValueError):
        weight_vector({"nope": 1.0})


# ---------------------------------------------------------------------------- fitting


def _synthetic_groups(n: int = 40, size: int = 6, d: int = 4, signal: int = 1, seed: int = 0):
    """Groups whose correct candidate is the only one with feature ``signal`` at 1; the other
    features are noise."""
    rng = np.random.default_rng(seed)
    groups = []
    for _ in range(n):
        X = rng.normal(size=(size, d))
        X[:, signal] = 0.0
        y = np.zeros(size)
        j = int(rng.integers(size))
        X[j, signal] = 1.0
        y[j] = 1.0
        groups.append((X, y))
    return groups


def test_fit_weights_learns_the_feature_that_picks_the_correct_candidate():
    groups = _synthetic_groups()
    w = fit_weights(groups, l2=1e-3, steps=400)
    assert w[1] > 0
    assert w[1] > np.abs(np.delete(w, 1)).max()
    for X, y in groups:
        assert y[int(np.argmax(X @ w))] == 1.0


def test_fit_weights_needs_a_question_with_a_correct_candidate():
    X = np.ones((3, 2))
    with pytest.raises(ValueError):
        fit_weights([(X, np.zeros(3))])


def test_softmax_loss_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    groups = []
    for _ in range(5):
        X = rng.normal(size=(7, 4))
        y = np.zeros(7)
        y[rng.choice(7, size=2, replace=False)] = 1.0  # two correct candidates
        groups.append((X, y))
    w = rng.normal(size=4)
    loss, grad = softmax_loss(w, groups, l2=0.01)
    eps = 1e-6
    numeric = np.zeros_like(w)
    for i in range(len(w)):
        e = np.zeros_like(w)
        e[i] = eps
        numeric[i] = (softmax_loss(w + e, groups, 0.01)[0] - softmax_loss(w - e, groups, 0.01)[0]) / (2 * eps)
    assert np.allclose(grad, numeric, rtol=1e-4, atol=1e-6)
    assert loss > 0


def test_softmax_loss_of_one_group_is_minus_log_the_correct_probability():
    X = np.array([[1.0], [0.0]])
    y = np.array([1.0, 0.0])
    loss, _ = softmax_loss(np.array([2.0]), [(X, y)], l2=0.0)
    assert loss == pytest.approx(-np.log(np.exp(2) / (np.exp(2) + 1)))


# ---------------------------------------------------------------------------- features


def test_transcript_feature_is_the_mean_of_the_top_matches_over_the_best_transcripts():
    got = transcript_feature(["a", "a", "b", "a"], np.array([0.8, 0.4, 0.6, 0.2]), top=2)
    # a: (0.8 + 0.4) / 2 = 0.6; b: (0.6 + nothing) / 2 = 0.3; the best is a
    assert got.tolist() == pytest.approx([1.0, 1.0, 0.5, 1.0])
    assert transcript_feature([], np.array([]), top=2).tolist() == []
    assert transcript_feature(["a", "b"], np.array([0.0, 0.0]), top=1).tolist() == [0.0, 0.0]


def test_reciprocal_ranks():
    got = reciprocal_ranks([7, 3, 5], np.array([3, 5, 7, 9]), k=10.0)
    assert got.tolist() == pytest.approx([10 / 11, 10 / 12, 1.0, 0.0])
    assert reciprocal_ranks([], np.array([1, 2]), k=1.0).tolist() == [0.0, 0.0]
    assert reciprocal_ranks([2, 1], np.array([1, 2]), k=1.0).tolist() == pytest.approx([0.5, 1.0])


# ---------------------------------------------------------------------------- _fit


@dataclass
class _Example:
    transcript: str
    cands: Candidates
    labels: np.ndarray


def _examples(transcripts: list[str]) -> list[_Example]:
    out = []
    for t in transcripts:
        X = np.zeros((2, len(FEATURES)), dtype=np.float32)
        out.append(_Example(t, Candidates(np.arange(2), X), np.array([1.0, 0.0], dtype=np.float32)))
    return out


def test_folds_keep_whole_transcripts_together_and_are_deterministic():
    names = ["h3", "h1", "h2", "h1", "h4", "h3", "h2", "h5", "h1"]
    exs = _examples(names)
    parts = _fit.folds(exs, 3)
    assert sorted(j for p in parts for j in p) == list(range(len(names)))  # every example once
    fold_of = {j: n for n, p in enumerate(parts) for j in p}
    for a in range(len(names)):
        for b in range(len(names)):
            if names[a] == names[b]:
                assert fold_of[a] == fold_of[b]
    assert _fit.folds(exs, 3) == parts
    # the same transcripts go together whatever the order of the examples
    rev = _fit.folds(list(reversed(exs)), 3)
    assert [sorted({names[::-1][j] for j in p}) for p in rev] == [sorted({names[j] for j in p}) for p in parts]
    # sorted round robin: h1, h4 | h2, h5 | h3
    assert [sorted({names[j] for j in p}) for p in parts] == [["h1", "h4"], ["h2", "h5"], ["h3"]]
    # more folds than transcripts: one fold per transcript, none empty
    assert len(_fit.folds(exs, 10)) == 5


def test_fit_ties_role_kind_to_the_larger_of_speaker_and_asker_when_it_never_varies():
    si, ai, ri = (FEATURES.index(f) for f in ("speaker", "asker", "role_kind"))
    rng = np.random.default_rng(2)
    exs = []
    for n in range(30):
        X = rng.normal(scale=0.1, size=(4, len(FEATURES))).astype(np.float32)
        X[:, ri] = 0.0  # never varies
        X[:, si] = 0.0
        X[:, ai] = 0.0
        X[0, si] = 1.0  # the named speaker's answer is correct
        X[1 + n % 3, ai] = 1.0  # a passage where the named person asked: not the answer
        exs.append(_Example(f"t{n % 4}", Candidates(np.arange(4), X), np.array([1, 0, 0, 0], dtype=np.float32)))
    out = _fit.fit(exs, l2=1e-3)
    assert set(out) == set(FEATURES)
    assert out["speaker"] > 0
    assert out["speaker"] > out["asker"]
    assert _fit.TIED == {"role_kind": ("speaker", "asker")}
    assert out["role_kind"] == max(out["speaker"], out["asker"])


def test_fit_keeps_role_kind_fitted_when_it_varies():
    ri = FEATURES.index("role_kind")
    rng = np.random.default_rng(3)
    exs = []
    for n in range(30):
        X = rng.normal(scale=0.1, size=(4, len(FEATURES))).astype(np.float32)
        X[:, ri] = 0.0
        X[3, ri] = 1.0  # varies, and marks a wrong candidate
        exs.append(_Example(f"t{n % 4}", Candidates(np.arange(4), X), np.array([1, 0, 0, 0], dtype=np.float32)))
    out = _fit.fit(exs, l2=1e-3)
    assert out["role_kind"] < 0


# ---------------------------------------------------------------------------- settings


def test_an_unknown_ranking_weight_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        load_settings(ranking={"weights": {"nope": 1}})
    assert "nope" in str(err.value)
    assert "dense" in str(err.value)


def test_ranking_pool_from_the_environment(monkeypatch):
    assert load_settings().ranking.pool == 50
    monkeypatch.setenv("RAG_RANKING__POOL", "20")
    assert load_settings().ranking.pool == 20
