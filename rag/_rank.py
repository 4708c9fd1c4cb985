"""Ranking: every candidate passage gets a row of features, and its score is their weighted sum.

The weights are not chosen by hand: `rag fit` learns them from questions with known passages
(by default the training split of the committee hearings, cross-validated by hearing; see
docs/EVALUATION.md), and they live in ``Settings.ranking.weights``. Features are plain numbers
any interview has (how close in meaning, how many rare words shared, whether the question names
this speaker or the one who asked), so a model fitted on one kind of transcript carries to another.

A feature missing from the weights counts zero; a weight naming an unknown feature is an error
that lists the known ones. Features that did not pay on both the training split and the
development set were taken out (docs/EVALUATION.md, ablation): a third BM25 index over the
questions alone, the dense list's reciprocal rank, the neighbouring passages' scores and a flag
for passages with no question.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FEATURES: tuple[str, ...] = (
    "dense",  # cosine of the question with the passage (its question and answer, with speakers)
    "lexical",  # BM25 over speaker, asker, question and answer, divided by the best passage's
    "lexical_answer",  # BM25 over the answer's words alone, likewise divided
    "lexical_rr",  # reciprocal rank in the lexical list
    "speaker",  # the question names the passage's speaker (by name, initials, tag or title)
    "asker",  # the question names the passage's asker
    "role_kind",  # the question names the passage's role or kind ("the interviewer", "the reader")
    "transcript",  # how well the passage's transcript matches: its best candidates' dense + lexical
    "short",  # an answer of fewer than ten words ("Yes.", "Thank you, Chair.")
    "log_words",  # log of the answer's length in words, over log 1000
    "introduction",  # the transcript's introduction
    "comment",  # a reader's comment
)


def check_weights(weights: dict[str, float]) -> None:
    unknown = sorted(set(weights) - set(FEATURES))
    if unknown:
        raise ValueError(f"unknown ranking feature(s) {', '.join(unknown)}; valid: {', '.join(FEATURES)}")


def weight_vector(weights: dict[str, float], features: tuple[str, ...] = FEATURES) -> np.ndarray:
    check_weights(weights)
    return np.array([float(weights.get(f, 0.0)) for f in features], dtype=np.float32)


@dataclass
class Candidates:
    """The pool for one question: passage indices and their feature rows (in FEATURES order)."""

    rows: np.ndarray  # int64 passage indices
    X: np.ndarray  # float32, len(rows) x len(FEATURES)

    def scores(self, w: np.ndarray) -> np.ndarray:
        return self.X @ w


def reciprocal_ranks(order: list[int], rows: np.ndarray, k: float) -> np.ndarray:
    """k / (k + rank) for each row (rank 1 = the list's first); 0 when a row is not in the list."""
    at = {i: r for r, i in enumerate(order, 1)}
    return np.array([k / (k + at[int(i)] - 1) if int(i) in at else 0.0 for i in rows], dtype=np.float32)


def transcript_feature(transcripts: list[str], match: np.ndarray, top: int) -> np.ndarray:
    """For each candidate, the mean of the ``top`` best ``match`` values among the candidates of
    its transcript, divided by the best transcript's: a passage in the meeting that keeps coming
    up is likelier than a lone match in another."""
    by: dict[str, list[float]] = {}
    for t, m in zip(transcripts, match.tolist()):
        by.setdefault(t, []).append(m)
    agg = {t: sum(sorted(v, reverse=True)[:top]) / top for t, v in by.items()}
    best = max(agg.values(), default=0.0) or 1.0
    return np.array([agg[t] / best for t in transcripts], dtype=np.float32)


def length_features(n_words: np.ndarray, short_words: int) -> tuple[np.ndarray, np.ndarray]:
    short = (n_words < short_words).astype(np.float32)
    return short, (np.log1p(n_words) / math.log(1000)).astype(np.float32)


# ---------------------------------------------------------------------------- fitting


def softmax_loss(w: np.ndarray, groups: list[tuple[np.ndarray, np.ndarray]], l2: float) -> tuple[float, np.ndarray]:
    """Listwise loss: for each question, minus the log of the probability a softmax over its
    candidates' scores gives to its correct candidates together (the chance that the first
    passage is a correct one, the figure hit@1 counts); plus ``l2`` * |w|^2."""
    loss = l2 * float(w @ w)
    grad = 2 * l2 * w
    for X, y in groups:
        s = X @ w
        s = s - s.max()
        p = np.exp(s)
        p /= p.sum()
        pos = float(p @ y)
        loss -= np.log(pos + 1e-12) / len(groups)
        # d/dw of -log(sum_pos p) = E_p[x] - E_{p | pos}[x]
        grad += X.T @ (p - p * y / (pos + 1e-12)) / len(groups)
    return loss, grad


def fit_weights(groups: list[tuple[np.ndarray, np.ndarray]], *, l2: float = 1e-3, steps: int = 400,
                lr: float = 0.1, start: np.ndarray | None = None) -> np.ndarray:
    """Weights minimising ``softmax_loss`` (Adam; the loss is convex in w). ``groups``: per
    question, its candidates' feature rows and 0/1 labels; questions with no correct candidate
    teach nothing and are left out."""
    groups = [(X.astype(np.float64), y.astype(np.float64)) for X, y in groups if y.sum() > 0]
    if not groups:
        raise ValueError("no question has a correct passage among its candidates: nothing to fit")
    d = groups[0][0].shape[1]
    w = np.zeros(d) if start is None else start.astype(np.float64).copy()
    m = np.zeros(d)
    v = np.zeros(d)
    for t in range(1, steps + 1):
        _, g = softmax_loss(w, groups, l2)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w -= lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    return w
