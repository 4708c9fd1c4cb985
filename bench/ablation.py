"""Ablation of the ranking: each feature and each planning rule switched off in turn.

For every variant the weights are fitted again without it: the training split's figures are
cross-validated by hearing (6 folds), the development set's come from weights fitted on the whole
training split. A feature or rule that pays on one and not the other shows up here.

    .venv/bin/python bench/ablation.py [--train-store DIR] [--dev-store DIR] [--markdown]

Stores are built in a temporary folder unless given (about a minute of embedding).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from _common import DEV_QUESTIONS, DEV_TRANSCRIPTS, SHARED

TRAIN = SHARED / "qmsum-committee-train"
RULES = ("strip_request", "title_neutral", "scope")


def _store(path: str | None, transcripts: Path, tmp: Path, name: str) -> Path:
    from rag import ingest, load_settings

    store = Path(path) if path else tmp / name
    report = ingest([transcripts], load_settings(store=store))
    if report.failed:
        raise SystemExit(f"could not ingest {transcripts}: {[f.path for f in report.failed]}")
    return store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-store")
    ap.add_argument("--dev-store")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown (else JSON)")
    ap.add_argument("--l2", type=float, default=1e-4, help="regularisation (the one `rag fit` chose on the training split)")
    args = ap.parse_args()

    from rag import _fit, load_settings
    from rag._engine import Engine
    from rag._rank import FEATURES, weight_vector

    tmp = Path(tempfile.mkdtemp(prefix="rag-ablation-"))
    train_store = _store(args.train_store, TRAIN / "transcripts", tmp, "train")
    dev_store = _store(args.dev_store, DEV_TRANSCRIPTS, tmp, "dev")

    def examples(store: Path, questions: Path, **planning: bool):
        s = load_settings(store=store)
        for key, value in planning.items():
            setattr(s.planning, key, value)
        engine = Engine(s)
        return engine, _fit.collect(engine, str(questions))

    def row(name: str, train, dev, features=FEATURES) -> dict:
        (etr, extr), (edv, exdv) = train, dev
        cv = _fit.cross_validate(etr, extr, features=features, l2=args.l2)
        w = weight_vector(_fit.fit(extr, features=features, l2=args.l2))
        d = _fit.scores(edv, exdv, w)
        return {"variant": name, "train": {k: round(v, 3) for k, v in cv.items() if k != "n"},
                "dev": {k: round(v, 3) for k, v in d.items() if k != "n"}}

    base_train = examples(train_store, TRAIN / "questions.jsonl")
    base_dev = examples(dev_store, DEV_QUESTIONS)
    rows = [row("all features and rules", base_train, base_dev)]
    hand = load_settings().ranking.weights  # for reference: the weights in Settings now
    rows.append({"variant": "the weights in Settings (fitted once, not refitted per fold)",
                 "train": {k: round(v, 3) for k, v in _fit.scores(base_train[0], base_train[1], weight_vector(hand)).items() if k != "n"},
                 "dev": {k: round(v, 3) for k, v in _fit.scores(base_dev[0], base_dev[1], weight_vector(hand)).items() if k != "n"}})
    old = {"dense": 0.3, "lexical": 0.7, "speaker": 0.2, "role_kind": 0.2}
    rows.append({"variant": "before fitting: hand-set weights (dense 0.3, lexical 0.7, speaker 0.2, role/kind 0.2)",
                 "train": {k: round(v, 3) for k, v in _fit.scores(base_train[0], base_train[1], weight_vector(old)).items() if k != "n"},
                 "dev": {k: round(v, 3) for k, v in _fit.scores(base_dev[0], base_dev[1], weight_vector(old)).items() if k != "n"}})
    for f in FEATURES:
        if not any(ex.cands.X[:, FEATURES.index(f)].std() > 0 for ex in base_train[1]):
            continue  # never varies in the training split: nothing to switch off
        rows.append(row(f"without feature `{f}`", base_train, base_dev, tuple(x for x in FEATURES if x != f)))
    for rule in RULES:
        rows.append(row(f"without rule `planning.{rule}`", examples(train_store, TRAIN / "questions.jsonl", **{rule: False}),
                        examples(dev_store, DEV_QUESTIONS, **{rule: False})))
    if not args.markdown:
        print(json.dumps(rows, indent=2))
        return
    print("| variant | train hit@1 | train hit@5 | train MRR | dev hit@1 | dev hit@5 | dev MRR |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        t, d = r["train"], r["dev"]
        print(f"| {r['variant']} | {t['hit@1']:.3f} | {t['hit@5']:.3f} | {t['mrr@10']:.3f} | "
              f"{d['hit@1']:.3f} | {d['hit@5']:.3f} | {d['mrr@10']:.3f} |")


if __name__ == "__main__":
    main()
