"""Fit the answer step's sentence-selection settings (``Settings.answer``) on the training split.

Each training question is retrieved once with the engine as it answers; then every candidate
setting composes the answer from the same sentences, and the content-word F1 of that answer
against the reference answer (``rag._evaluate.answer_f1``) is averaged. Coordinate search: one
setting at a time over its grid, the others held, two rounds. The length budget is not fitted
(120 words, the length of the "top passage" baseline it is compared with).

    .venv/bin/python bench/fit_selection.py --train-store DIR --dev-store DIR

Prints JSON: the chosen settings, and train and dev F1 of ours and of the top passage (the first
retrieved passage cut to the budget) side by side.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import DEV_QUESTIONS, SHARED

TRAIN_QUESTIONS = SHARED / "qmsum-committee-train" / "questions.jsonl"
GRID = {
    "w_overlap": (0.2, 0.35, 0.5, 0.65, 0.8),
    "w_type": (0.0, 0.05, 0.1, 0.2, 0.3, 0.5),
    "type_gate": (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3),
    "w_position": (0.0, 0.005, 0.01, 0.02, 0.05),
    "max_repeat": (0.3, 0.5, 0.7, 0.85, 1.0),
    "w_rank": (0.0, 0.02, 0.05, 0.1, 0.2),
    "question_penalty": (0.0, 0.08, 0.15, 0.3, 1.0),
    "relative_bar": (0.1, 0.2, 0.35, 0.5, 1.0, 2.0, 5.0),
    "follow_bar": (0.0, 0.1, 0.2, 0.35, 0.5, 1.0, 2.0),
    "max_passages": (1, 2, 3, 5),
    "summary_passages": (1, 2, 3, 4, 5),
    "per_passage": (1, 2, 3, 4, 6),
}


def prepared(store: str, questions: Path):
    """Per answerable question with a reference: what composing an answer needs."""
    from rag import Engine, load_settings
    from rag._engine import _refers_to
    from rag._evaluate import load_questions

    engine = Engine(load_settings(store=store))
    engine.warm()
    out = []
    for q in load_questions(questions):
        if not q["answer"] or q["expect_no_answer"] or q["follow_up_of"]:
            continue
        plan, q_vec, retrieved = engine.retrieve(q["question"], filters=q["filters"] or None)
        top = retrieved[: engine.settings.k]
        pool = ([r for r in top if _refers_to(r.passage, plan, engine.index().role_of)] or top) if plan.refers else top
        out.append((q, plan, q_vec, top, pool))
    return engine, out


def score(engine, items, cfg) -> tuple[float, float]:
    """Mean answer F1 of ours and of the top passage cut to the budget."""
    import dataclasses

    from rag import _answer
    from rag._evaluate import answer_f1, cut_words

    speakers = _answer.manifest_speakers(engine._manifest)
    ours = top_f1 = 0.0
    for q, plan, q_vec, top, pool in items:
        chosen = _answer.select_sentences(plan.text, q_vec, pool, engine._sentence_vectors, cfg=cfg, idf=engine._idf,
                                          answer_type=plan.answer_type)
        ranks = [top.index(r) for r in pool]
        chosen = [dataclasses.replace(c, passage_rank=ranks[c.passage_rank]) for c in chosen]
        text, _ = _answer.compose(top, chosen, speakers=speakers)
        ours += answer_f1(text, q["answer"])
        top_f1 += answer_f1(cut_words(top[0].passage.text, cfg.budget_words), q["answer"])
    n = max(len(items), 1)
    return ours / n, top_f1 / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-store", required=True)
    ap.add_argument("--dev-store", required=True)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    from rag._settings import AnswerSettings

    engine, train = prepared(args.train_store, TRAIN_QUESTIONS)
    cfg = AnswerSettings()
    start = score(engine, train, cfg)
    best = start[0]
    for _ in range(args.rounds):
        for key, values in GRID.items():
            for v in values:
                trial = cfg.model_copy(update={key: v})
                if key == "w_overlap":
                    trial = trial.model_copy(update={"w_cosine": round(1 - v, 4)})
                f1 = score(engine, train, trial)[0]
                if f1 > best + 1e-4:
                    best, cfg = f1, trial
    train_f1 = score(engine, train, cfg)
    dev_engine, dev = prepared(args.dev_store, DEV_QUESTIONS)
    dev_start = score(dev_engine, dev, AnswerSettings())
    dev_f1 = score(dev_engine, dev, cfg)
    print(json.dumps({
        "chosen": cfg.model_dump(),
        "train": {"questions": len(train), "before": round(start[0], 4), "ours": round(train_f1[0], 4),
                  "top_passage": round(train_f1[1], 4)},
        "dev": {"questions": len(dev), "before": round(dev_start[0], 4), "ours": round(dev_f1[0], 4),
                "top_passage": round(dev_f1[1], 4)},
    }, indent=2))


if __name__ == "__main__":
    main()
