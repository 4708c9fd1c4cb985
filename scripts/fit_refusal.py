#!/usr/bin/env python
"""Fit the refusal model (rag/_refusal.py) on the training split and report it.

Labels come for free: each training question asked of the whole store is answerable; the same
question asked with a filter that keeps only the other hearings is a made-up unanswerable one (its
own hearing is out of reach, and so is its vocabulary: the words and names only that hearing has
count as absent from the corpus, as they would be in a store without it). Many hearings share
their subject, so some made-up questions are in fact partly answerable from another one: noise,
counted below by eye from the examples printed. A second kind, with cleaner labels: the same
question asked of the half of the other hearings least like its own (by mean passage vector), a
question on a subject the store does not cover. The model is fitted on both kinds (``--fit-on``),
and figures are printed for each.

The logistic regression is fitted with cross-validation by hearing (folds of whole hearings, both
versions of a question in the same fold); the L2 penalty is the one with the best cross-validated
log-loss, and the threshold the lowest that refuses at most --max-refused of the answerable
training questions (out-of-fold probabilities). Then the model fitted on all of train is measured
on the development split (same construction) and on the seed set (its own `expect_no_answer`
labels), next to the earlier rule (evidence < abstain_threshold, unknown names).

    .venv/bin/rag ingest ../shared/data/qmsum-committee-train/transcripts --store /tmp/refusal-train
    .venv/bin/rag ingest eval/qmsum-committee-val/transcripts --store /tmp/refusal-dev
    .venv/bin/rag ingest corpus --store /tmp/refusal-seed
    .venv/bin/python scripts/fit_refusal.py

It prints the figures and the weights to put in rag/_settings.py (RefusalSettings).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag import Engine, load_settings  # noqa: E402
from rag._query import Corpus  # noqa: E402
from rag._refusal import FEATURES, features  # noqa: E402


def _load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class Row:
    def __init__(self, qid, group, label, values, has_sentences, speaker_only, unknown, evidence, question, quote):
        self.qid, self.group, self.label = qid, group, label
        self.values, self.has_sentences, self.speaker_only = values, has_sentences, speaker_only
        self.unknown, self.evidence, self.question, self.quote = unknown, evidence, question, quote
        self.kind = "answerable" if label == 0 else "others"

    def x(self) -> list[float]:
        return [self.values[f] for f in FEATURES]

    def hard(self) -> bool | None:
        """What the rules outside the model decide: no sentence, refuse; a speaker-only question, answer."""
        if not self.has_sentences:
            return True
        if self.speaker_only and not self.unknown:
            return False
        return None

    def old_rule(self, threshold: float) -> bool:
        if not self.has_sentences or self.unknown:
            return True
        if self.speaker_only:
            return False
        return self.evidence < threshold


def answer_row(engine: Engine, question: str, *, qid: str, group: str, label: int, filters=None, history=(),
               vocab: set[str] | None = None) -> Row:
    """The features of the answer Engine.ask would give (same steps: retrieve, select)."""
    query, q_vec, retrieved = engine.retrieve(question, filters=filters, history=history)
    top = retrieved[: engine.settings.k]
    chosen, evidence = engine._select(query, q_vec, top)
    words = engine.index().corpus.words if vocab is None else vocab
    if vocab is not None:  # the names its own hearing alone has are unknown to the others
        query.unknown_names = Corpus.unknown_names(types.SimpleNamespace(words=vocab), query.text)
    f = features(query, top, chosen, evidence, idf=engine._idf, vocab=words)
    return Row(qid, group, label, f.values, bool(chosen), bool(query.refers and not query.topic),
               bool(query.unknown_names), evidence, question, chosen[0].text if chosen else "")


def split_rows(store: Path, questions: Path, embedder=None, with_distant: bool = False) -> tuple[list[Row], object]:
    """Each question asked normally (answerable) and of the other hearings only (made up); with
    ``with_distant``, also of the other hearings least like its own (made up, another subject:
    ``Row.kind`` "distant")."""
    settings = load_settings(store=store)
    engine = Engine(settings, embedder=embedder)
    index = engine.index()
    by_t: dict[str, list] = {}
    for p in index.passages:
        by_t.setdefault(p.transcript, []).append(p)
    others_vocab = {t: Corpus([p for u, ps in by_t.items() if u != t for p in ps], []).words for t in by_t}
    far = distant(index, sorted(by_t))
    far_vocab = {t: Corpus([p for u in far[t] for p in by_t[u]], []).words for t in by_t} if with_distant else {}
    rows = []
    for q in _load(questions):
        own = q["sources"][0]["transcript"]
        others = sorted(t for t in by_t if t != own)
        rows.append(answer_row(engine, q["question"], qid=q["id"], group=own, label=0))
        rows.append(answer_row(engine, q["question"], qid=q["id"], group=own, label=1,
                               filters={"transcript": others}, vocab=others_vocab[own]))
        if with_distant:
            row = answer_row(engine, q["question"], qid=q["id"], group=own, label=1,
                             filters={"transcript": far[own]}, vocab=far_vocab[own])
            row.kind = "distant"
            rows.append(row)
    return rows, engine.embedder


def distant(index, transcripts: list[str]) -> dict[str, list[str]]:
    """For each transcript, the other transcripts least like it: the half whose mean passage vector
    is furthest (by cosine) from its own. A question asked of these alone is a made-up unanswerable
    question of another subject, the kind a user asks of an archive that does not cover it; the
    other hearings as a whole often share the question's subject and partly answer it."""
    cent = np.stack([np.asarray(index.vectors[index.transcript_rows(t)], dtype=np.float32).mean(0) for t in transcripts])
    cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    sim = cent @ cent.T
    out = {}
    for i, t in enumerate(transcripts):
        order = [j for j in np.argsort(sim[i]) if j != i]
        out[t] = sorted(transcripts[j] for j in order[: max(1, len(order) // 2)])
    return out


def seed_rows(store: Path, questions: Path, embedder=None) -> list[Row]:
    engine = Engine(load_settings(store=store), embedder=embedder)
    qs = _load(questions)
    answers = {}
    rows = []
    for q in qs:
        history = [answers[q["follow_up_of"]]] if q.get("follow_up_of") in answers else []
        rows.append(answer_row(engine, q["question"], qid=q["id"], group="seed", label=int(q.get("expect_no_answer", False)),
                               history=history))
        answers[q["id"]] = engine.ask(q["question"], history=history)
    return rows


# ---------------------------------------------------------------------------- the model

def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Logistic regression by Newton's method on standardised features (L2 on the weights, not
    the bias); returned on the raw features' scale."""
    mu, sd = X.mean(0), X.std(0)
    sd[sd == 0] = 1.0
    Z = np.hstack([(X - mu) / sd, np.ones((len(X), 1))])
    w = np.zeros(Z.shape[1])
    reg = np.full(Z.shape[1], l2)
    reg[-1] = 0.0
    for _ in range(100):
        p = 1 / (1 + np.exp(-(Z @ w)))
        g = Z.T @ (p - y) + reg * w
        H = (Z * (p * (1 - p))[:, None]).T @ Z + np.diag(reg) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(H, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    coef = w[:-1] / sd
    bias = w[-1] - float((w[:-1] * mu / sd).sum())
    return coef, float(bias)


def prob(X: np.ndarray, coef: np.ndarray, bias: float) -> np.ndarray:
    return 1 / (1 + np.exp(-(X @ coef + bias)))


def folds_of(groups: list[str], n: int) -> list[set[str]]:
    hearings = sorted(set(groups))
    return [set(hearings[i::n]) for i in range(n)]


def out_of_fold(rows: list[Row], n_folds: int, l2: float, predict: list[Row] | None = None) -> np.ndarray:
    """Each row's probability from the model fitted on the other folds' ``rows`` (folds of whole
    hearings); with ``predict``, the probabilities of those rows instead, by the same folds."""
    X = np.array([r.x() for r in rows])
    y = np.array([r.label for r in rows], dtype=float)
    fit_mask = np.array([r.hard() is None for r in rows])
    out = rows if predict is None else predict
    Xo = np.array([r.x() for r in out])
    p = np.zeros(len(out))
    groups = [r.group for r in rows]
    for held in folds_of(groups, n_folds):
        train_part = np.array([g not in held for g in groups])
        coef, bias = fit_logistic(X[train_part & fit_mask], y[train_part & fit_mask], l2)
        test = np.array([r.group in held for r in out])
        p[test] = prob(Xo[test], coef, bias)
    return p


def decisions(rows: list[Row], p: np.ndarray, threshold: float, floor: float | None = None) -> list[bool]:
    """The model's decisions; with ``floor``, also refuse what the earlier rule refuses (evidence
    under ``floor``, an unknown name): what the engine does (rag/_decide.py)."""
    out = [r.hard() if r.hard() is not None else bool(pi >= threshold) for r, pi in zip(rows, p)]
    if floor is not None:
        out = [d or r.old_rule(floor) for r, d in zip(rows, out)]
    return out


def figures(rows: list[Row], refused: list[bool]) -> dict:
    ans = [d for r, d in zip(rows, refused) if r.label == 0]
    una = [d for r, d in zip(rows, refused) if r.label == 1]
    tp = sum(una)
    n_ref = sum(refused)
    return {
        "answerable": len(ans), "unanswerable": len(una),
        "answerable_refused": sum(ans) / len(ans) if ans else float("nan"),
        "unanswerable_refused": tp / len(una) if una else float("nan"),
        "precision": tp / n_ref if n_ref else float("nan"),
        "recall": tp / len(una) if una else float("nan"),
        "accuracy": sum((d == bool(r.label)) for r, d in zip(rows, refused)) / len(rows),
    }


def log_loss(rows: list[Row], p: np.ndarray) -> float:
    m = [(r.label, pi) for r, pi in zip(rows, p) if r.hard() is None]
    eps = 1e-9
    return -sum(y * math.log(pi + eps) + (1 - y) * math.log(1 - pi + eps) for y, pi in m) / len(m)


FLOORS = (0.0, 0.15, 0.2, 0.25, 0.3, 0.35)


def choose_threshold(rows: list[Row], p: np.ndarray, max_refused: float, floor: float | None) -> float:
    """The lowest threshold that refuses at most ``max_refused`` of the answerable questions
    (counting those the rules outside the model, and the floor, refuse)."""
    cands = sorted({round(float(x), 4) for x in p} | {1.0})
    for t in cands:
        f = figures(rows, decisions(rows, p, t, floor))
        if f["answerable_refused"] <= max_refused:
            return t
    return 1.0


def _line(name: str, f: dict) -> str:
    return (f"| {name} | {f['answerable']} / {f['unanswerable']} | {f['answerable_refused']:.3f} | {f['unanswerable_refused']:.3f} "
            f"| {f['precision']:.3f} | {f['recall']:.3f} | {f['accuracy']:.3f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shared = ROOT.parent / "shared" / "data" / "qmsum-committee-train"
    ap.add_argument("--train-store", type=Path, default=Path("/tmp/refusal-train"))
    ap.add_argument("--train-questions", type=Path, default=shared / "questions.jsonl")
    ap.add_argument("--dev-store", type=Path, default=Path("/tmp/refusal-dev"))
    ap.add_argument("--dev-questions", type=Path, default=ROOT / "eval" / "qmsum-committee-val" / "questions.jsonl")
    ap.add_argument("--seed-store", type=Path, default=Path("/tmp/refusal-seed"))
    ap.add_argument("--seed-questions", type=Path, default=ROOT / "eval" / "seed.jsonl")
    ap.add_argument("--folds", type=int, default=6)
    ap.add_argument("--max-refused", type=float, default=0.05, help="share of answerable training questions allowed to be refused")
    ap.add_argument("--floors", type=float, nargs="+", default=list(FLOORS), help="evidence floors to choose from")
    ap.add_argument("--dump", type=Path, help="write every row's features and decisions as JSON")
    ap.add_argument("--fit-on", choices=("others", "distant", "both"), default="both",
                    help="which made-up questions the model is fitted on: asked of all the other hearings, "
                         "of the half least like its own, or both (default); figures are reported for each")
    a = ap.parse_args(argv)

    old_t = load_settings().abstain_threshold
    every_train, embedder = split_rows(a.train_store, a.train_questions, with_distant=True)
    every_dev, _ = split_rows(a.dev_store, a.dev_questions, embedder, with_distant=True)
    kinds = {"others": ("others",), "distant": ("distant",), "both": ("others", "distant")}[a.fit_on]
    train = [r for r in every_train if r.label == 0 or r.kind in kinds]
    dev = [r for r in every_dev if r.label == 0 or r.kind == "others"]
    seed = seed_rows(a.seed_store, a.seed_questions, embedder)
    fit_rows = [r for r in train if r.hard() is None]
    print(f"train: {len(train)} rows ({len(fit_rows)} for the model; the others decided by the rules: "
          f"{sum(r.hard() is True for r in train)} without a sentence, {sum(r.hard() is False for r in train)} speaker-only)")
    for f in FEATURES:
        if len({r.values[f] for r in fit_rows}) < 2:
            print(f"  feature {f!r} never varies in the training rows: its weight is 0")

    losses = {l2: log_loss(train, out_of_fold(train, a.folds, l2)) for l2 in (0.1, 1.0, 10.0, 30.0, 100.0)}
    l2 = min(losses, key=losses.get)
    print("cross-validated log-loss by L2:", ", ".join(f"{k:g}: {v:.4f}" for k, v in losses.items()), f"-> {l2:g}")
    p_cv = out_of_fold(train, a.folds, l2)
    # the evidence floor is fitted with the threshold: of the floors that leave room for the model,
    # the one whose best threshold refuses the most made-up questions (out of fold), at most
    # --max-refused of the answerable ones
    best = None
    for floor in a.floors:
        t = choose_threshold(train, p_cv, a.max_refused, floor)
        f = figures(train, decisions(train, p_cv, t, floor))
        print(f"  floor {floor:.2f}: threshold {t:.4f}, answerable refused {f['answerable_refused']:.3f}, "
              f"made-up refused {f['unanswerable_refused']:.3f}")
        if f["answerable_refused"] <= a.max_refused and (best is None or f["unanswerable_refused"] > best[2]):
            best = (floor, t, f["unanswerable_refused"])
    floor_fit, threshold = (best[0], best[1]) if best else (old_t, choose_threshold(train, p_cv, a.max_refused, old_t))
    print(f"evidence floor {floor_fit:.2f} (Settings.abstain_threshold; it was {old_t})")

    X = np.array([r.x() for r in fit_rows])
    y = np.array([r.label for r in fit_rows], dtype=float)
    coef, bias = fit_logistic(X, y, l2)

    def apply(rows, floor=floor_fit):
        return decisions(rows, prob(np.array([r.x() for r in rows]), coef, bias), threshold, floor)

    print(f"\nthreshold {threshold:.4f}: the lowest at which the model with the evidence floor {floor_fit} refuses at most "
          f"{a.max_refused:.0%} of answerable training questions (out of fold)\n")
    print("| set | answerable / unanswerable | answerable refused | unanswerable refused | precision | recall | accuracy |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print(_line(f"train, earlier rule (evidence < {old_t})", figures(train, [r.old_rule(old_t) for r in train])))
    print(_line("train, model alone (cross-validated by hearing)", figures(train, decisions(train, p_cv, threshold))))
    print(_line("train, model + floor (cross-validated by hearing)", figures(train, decisions(train, p_cv, threshold, floor_fit))))
    # each kind of made-up question on its own, out of fold (whichever kinds the model was fitted on)
    p_every = out_of_fold(train, a.folds, l2, predict=every_train)
    cv_every = decisions(every_train, p_every, threshold, floor_fit)
    for kind in ("others", "distant"):
        keep = [i for i, r in enumerate(every_train) if r.label == 0 or r.kind == kind]
        print(_line(f"train, model + floor (cross-validated by hearing), made up: {kind}",
                    figures([every_train[i] for i in keep], [cv_every[i] for i in keep])))
    print(_line("train, model + floor, fitted on all of train (in sample)", figures(train, apply(train))))
    for name, rows in (("dev", dev), ("seed", seed)):
        print(_line(f"{name}, earlier rule (evidence < {old_t})", figures(rows, [r.old_rule(old_t) for r in rows])))
        print(_line(f"{name}, model alone", figures(rows, apply(rows, None))))
        print(_line(f"{name}, model + floor", figures(rows, apply(rows))))
    # the made-up questions of another subject (the other hearings least like the question's own)
    for name, every in (("train", every_train), ("dev", every_dev)):
        rows = [r for r in every if r.label == 0 or r.kind == "distant"]
        print(_line(f"{name}, another subject: earlier rule", figures(rows, [r.old_rule(old_t) for r in rows])))
        print(_line(f"{name}, another subject: model + floor (fitted on all of train{', in sample' if name == 'train' else ''})",
                    figures(rows, apply(rows))))

    seed_dec = apply(seed)
    wrong = [(r.qid, "refused" if d else "answered") for r, d in zip(seed, seed_dec) if d != bool(r.label)]
    print("\nseed, wrong:", ", ".join(f"{q} ({how})" for q, how in wrong) or "none")
    dev_dec = apply(dev)
    print("dev, answerable refused:", ", ".join(r.qid for r, d in zip(dev, dev_dec) if d and not r.label) or "none")
    answered = [(r, pi) for r, pi, d in zip(train, p_cv, decisions(train, p_cv, threshold, floor_fit)) if r.label and not d]
    print(f"\ntrain, made-up unanswerable questions answered (cross-validated): {len(answered)}; the first ten, with their quote:")
    for r, pi in answered[:10]:
        print(f"  {r.qid} p={pi:.2f}  Q: {r.question[:90]}\n      quote: {r.quote[:160]}")

    print("\nweights for RefusalSettings (rag/_settings.py):")
    print("    " + ", ".join(f'"{f}": {c:.4f}' for f, c in zip(FEATURES, coef)))
    print(f"    bias {bias:.4f}, threshold {threshold:.4f}")
    if a.dump:
        a.dump.write_text(json.dumps([{"set": s, "id": r.qid, "label": r.label, "kind": r.kind, "group": r.group, **r.values,
                                       "has_sentences": r.has_sentences, "speaker_only": r.speaker_only,
                                       "unknown": r.unknown, "evidence": r.evidence}
                                      for s, rows in (("train", every_train), ("dev", every_dev), ("seed", seed))
                                      for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
