"""Fit the ranking weights on questions with known passages (`rag fit`).

For every question the engine gathers its candidate passages and their features exactly as it
does when answering (``Engine.candidates``); a candidate is correct when it overlaps a gold
passage. The weights minimise a listwise loss (``_rank.fit_weights``). Reported figures are
cross-validated by transcript: the questions of each fold's transcripts are ranked with weights
fitted on the other folds' questions only, so no hearing is scored by weights that saw it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ._evaluate import DEPTH, coverage, hit_at, load_questions, locate_sources, mrr_at
from ._rank import FEATURES, Candidates, fit_weights, weight_vector
from ._retrieve import rank

L2_GRID = (0.0, 1e-5, 1e-4, 1e-3)


@dataclass
class Example:
    """One question's candidates and which of them overlap its gold passages."""

    qid: str
    transcript: str  # the fold key: the (first) gold transcript
    cands: Candidates
    labels: np.ndarray  # 0/1 per candidate
    gold: list  # the gold ranges, for scoring a ranking


def collect(engine: Any, questions: str | list[dict[str, Any]], *, progress: Callable[[int, int], None] | None = None) -> list[Example]:
    """Candidates and labels of every question of a set with gold sources (follow-ups and
    unanswerable questions are left out)."""
    qs = load_questions(questions) if isinstance(questions, str) else questions
    qs = [q for q in qs if q["sources"] and not q["expect_no_answer"] and not q["follow_up_of"]]
    gold = locate_sources(qs, engine.source_text)
    out = []
    for n, q in enumerate(qs, 1):
        index, _, _, cands = engine.candidates(q["question"], filters=q["filters"] or None)
        ranges = [(index.passages[i].transcript, index.passages[i].start_char, index.passages[i].end_char) for i in cands.rows]
        labels = np.array([bool(c) for c in coverage(ranges, gold[q["id"]])], dtype=np.float32)
        out.append(Example(q["id"], q["sources"][0]["transcript"], cands, labels, gold[q["id"]]))
        if progress:
            progress(n, len(qs))
    return out


def scores(engine: Any, examples: Sequence[Example], w: np.ndarray, k: int = 5, per_answer: int = 2) -> dict[str, float]:
    """hit@1, hit@k and MRR@10 of the examples ranked with weights ``w``."""
    index = engine.index()
    h1 = hk = mrr = 0.0
    for ex in examples:
        ranked = rank(index, ex.cands, w, max(k, DEPTH), per_answer)[:DEPTH]
        ranges = [(index.passages[s.index].transcript, index.passages[s.index].start_char, index.passages[s.index].end_char)
                  for s in ranked]
        cov = coverage(ranges, ex.gold)
        h1 += hit_at(cov, 1)
        hk += hit_at(cov, k)
        mrr += mrr_at(cov)
    n = max(len(examples), 1)
    return {"hit@1": h1 / n, f"hit@{k}": hk / n, "mrr@10": mrr / n, "n": len(examples)}


def _groups(examples: Sequence[Example], cols: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(ex.cands.X[:, cols], ex.labels) for ex in examples]


def folds(examples: Sequence[Example], n_folds: int) -> list[list[int]]:
    """Example indices split into ``n_folds`` groups of whole transcripts (round robin over the
    transcripts in sorted order, so a fold is the same on every run)."""
    transcripts = sorted({ex.transcript for ex in examples})
    fold_of = {t: i % n_folds for i, t in enumerate(transcripts)}
    out: list[list[int]] = [[] for _ in range(min(n_folds, len(transcripts)))]
    for j, ex in enumerate(examples):
        out[fold_of[ex.transcript]].append(j)
    return [f for f in out if f]


def expand(w_sub: np.ndarray, cols: list[int]) -> np.ndarray:
    w = np.zeros(len(FEATURES), dtype=np.float32)
    w[cols] = w_sub
    return w


def cross_validate(engine: Any, examples: Sequence[Example], *, features: Sequence[str] = FEATURES, l2: float = 1e-3,
                   n_folds: int = 6, k: int = 5, per_answer: int = 2) -> dict[str, float]:
    """Figures of every example ranked by weights fitted without its fold's transcripts."""
    cols = [FEATURES.index(f) for f in features]
    parts = folds(examples, n_folds)
    totals = {"hit@1": 0.0, f"hit@{k}": 0.0, "mrr@10": 0.0}
    for held in parts:
        held_set = set(held)
        train = [ex for j, ex in enumerate(examples) if j not in held_set]
        w = expand(fit_weights(_groups(train, cols), l2=l2), cols)
        got = scores(engine, [examples[j] for j in held], w, k, per_answer)
        for key in totals:
            totals[key] += got[key] * len(held)
    n = max(len(examples), 1)
    return {key: v / n for key, v in totals.items()} | {"n": len(examples)}


# A feature that never varies among the training questions' candidates cannot be fitted; these
# take the weight of the features that carry the same kind of evidence (the largest of them).
# "The interviewer" or "the reader" names who spoke as a name does, whether they answered or
# asked; hearings' question sets never say it.
TIED = {"role_kind": ("speaker", "asker")}


def fit(examples: Sequence[Example], *, features: Sequence[str] = FEATURES, l2: float = 1e-3) -> dict[str, float]:
    """Weights fitted on all the examples, as the ``ranking.weights`` setting (rounded)."""
    cols = [FEATURES.index(f) for f in features]
    w = fit_weights(_groups(examples, cols), l2=l2)
    out = {f: round(float(x), 4) for f, x in zip(features, w)}
    for f, like in TIED.items():
        known = [out[x] for x in like if x in out]
        if f in out and known and not any(ex.cands.X[:, FEATURES.index(f)].std() > 0 for ex in examples):
            out[f] = max(known)
    return out


def choose_l2(engine: Any, examples: Sequence[Example], grid: Sequence[float] = L2_GRID, n_folds: int = 6,
              k: int = 5) -> tuple[float, dict[float, dict[str, float]]]:
    """The regularisation with the best cross-validated MRR@10 (hit@1 breaks ties), and every
    candidate's figures."""
    figures = {l2: cross_validate(engine, examples, l2=l2, n_folds=n_folds, k=k) for l2 in grid}
    best = max(grid, key=lambda l2: (round(figures[l2]["mrr@10"], 4), figures[l2]["hit@1"]))
    return best, figures


_TOML_HEAD = "# Ranking weights written by `rag fit`"


def weights_toml(weights: dict[str, float], source: str, figures: dict[str, float]) -> str:
    lines = [
        _TOML_HEAD,
        f"# fitted on {source}; cross-validated by transcript: "
        + ", ".join(f"{k} {v:.3f}" for k, v in figures.items() if k != "n"),
        "# use it with `rag --config THIS_FILE ...`, RAG_CONFIG=THIS_FILE, or name it rag.toml",
        "[rag.ranking.weights]",
    ]
    lines += [f"{f} = {w}" for f, w in weights.items()]
    return "\n".join(lines) + "\n"


def run_cli(args: Any, settings: Any) -> int:
    """`rag fit QUESTIONS [--folds N] [--write FILE] [--json]`: fit the ranking weights on a
    question set whose transcripts are in the store."""
    import json
    import sys
    from pathlib import Path

    from ._engine import Engine
    from ._errors import RagError
    from ._text import safe

    engine = Engine(settings)
    print(f"rag: reading {safe(args.questions)} against {safe(settings.describe_store())} …", file=sys.stderr)
    examples = collect(engine, args.questions)
    usable = [ex for ex in examples if ex.labels.sum() > 0]
    if len({ex.transcript for ex in usable}) < 2:
        raise RagError("fitting needs questions about at least two transcripts",
                       "Add questions with `sources` from two or more transcripts of the store.")
    transcripts = {ex.transcript for ex in examples}
    folds_n = max(2, min(args.folds, len(transcripts)))
    before = scores(engine, examples, weight_vector(settings.ranking.weights))
    l2, grid = choose_l2(engine, examples, n_folds=folds_n)
    weights = fit(examples, l2=l2)
    report = {
        "questions": len(examples),
        "with_a_correct_candidate": len(usable),
        "transcripts": len(transcripts),
        "folds": folds_n,
        "current_weights": {k: round(v, 4) for k, v in before.items() if k != "n"},
        "cross_validated": {str(g): {k: round(v, 4) for k, v in f.items() if k != "n"} for g, f in grid.items()},
        "l2": l2,
        "weights": weights,
    }
    if args.write:
        path = Path(args.write)
        if path.exists() and not path.read_text(encoding="utf-8", errors="replace").startswith(_TOML_HEAD):
            raise RagError(f"{path} exists and was not written by `rag fit`", "Name another file with --write.")
        path.write_text(weights_toml(weights, str(args.questions), grid[l2]), encoding="utf-8")
        report["written"] = str(path)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['questions']} questions ({report['with_a_correct_candidate']} with a correct passage among the "
          f"candidates) from {report['transcripts']} transcripts, {folds_n} folds by transcript")
    print("current weights, on these questions:  " + "  ".join(f"{k} {v:.3f}" for k, v in report["current_weights"].items()))
    for g, f in report["cross_validated"].items():
        mark = "  <- chosen" if float(g) == l2 else ""
        print(f"fitted, l2={g:<7} cross-validated: " + "  ".join(f"{k} {v:.3f}" for k, v in f.items()) + mark)
    print("weights: " + ", ".join(f"{k}={v}" for k, v in weights.items()))
    if args.write:
        print(f"written to {safe(args.write)}; use it with `rag --config {safe(args.write)} ...` or RAG_CONFIG")
    return 0
