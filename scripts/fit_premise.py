#!/usr/bin/env python
"""Fit ``Settings.refusal.premise_margin``: when a question names who said something and the
transcripts have someone else saying it, the answer says so and quotes them (rag/_engine.py,
``Engine._said_by_others``).

Labels come for free from any question set whose questions name a speaker: each such question
as asked is a true premise; the same question with the speaker's name replaced by another
speaker of the same transcript (chosen at random, fixed seed) is, most of the time, a false one.
Not always: in a hearing several people speak about the same subject, so some swapped questions
are in fact true (noise that makes the "swapped corrected" share below an underestimate).

For every question the script measures the evidence of the best sentence of the named speaker's
own words in the top passages and of other people's (``Engine._others_words``), and whether the
others' answer would stand on its own; then it reports, for a grid of (margin, named evidence
ceiling), the share of real questions corrected (wrongly) and of swapped ones corrected. The pair
chosen corrects the most swapped questions while correcting at most --max-wrong of the real ones,
on the training split; the development split is only reported.

    .venv/bin/rag ingest ../shared/data/qmsum-committee-train/transcripts --store /tmp/fit/train
    .venv/bin/rag ingest eval/qmsum-committee-val/transcripts --store /tmp/fit/dev
    .venv/bin/python scripts/fit_premise.py --train-store /tmp/fit/train --dev-store /tmp/fit/dev
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag import Engine, load_settings  # noqa: E402
from rag._decide import decide  # noqa: E402

MARGINS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25)
NAMED_MAX = (0.3, 0.35, 0.4, 0.45, 0.5, 1.0)


def _load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def probe(engine: Engine, question: str) -> dict:
    """The gap and whether the others' answer stands, for one question (no others' words among
    the top passages: never corrected)."""
    query, q_vec, retrieved = engine.retrieve(question, k=engine.settings.k)
    found = engine._others_words(query, retrieved[: engine.settings.k], engine._evidence_vec(query, q_vec))
    if found is None:
        return {"named": 1.0, "alt": 0.0, "stands": False}
    named, alt, pool, chosen, alt_evidence = found
    s = engine.settings
    stands = not decide(alt, alt_evidence, chosen, pool, idf=engine._idf, vocab=engine.index().corpus.words,
                        settings=s.refusal, threshold=s.abstain_threshold)
    return {"named": named, "alt": alt_evidence, "stands": stands}


def pairs(engine: Engine, questions: list[dict], seed: int = 0) -> list[tuple[str, str, dict, dict]]:
    """(question, swapped question, probe of each) for the answerable questions naming a speaker."""
    rng = random.Random(seed)
    index = engine.index()
    people: dict[str, set[str]] = defaultdict(set)
    for p in index.passages:
        if p.speaker:
            people[p.transcript].add(p.speaker)
    out = []
    for q in questions:
        if q.get("expect_no_answer") or not q.get("sources") or q.get("follow_up_of"):
            continue
        query = engine.retrieve(q["question"], k=engine.settings.k)[0]
        if not query.speakers:
            continue
        name = query.speakers[0]
        # the words of the speaker's name the question uses (surname, first name, tag)
        words = [w for w in re.findall(r"[A-Z][\w'’-]+", name) if re.search(rf"\b{re.escape(w)}\b", q["question"])]
        others = sorted(s for s in people[q["sources"][0]["transcript"]] if s != name and len(s.split()) >= 2)
        if not words or not others:
            continue
        other = rng.choice(others)
        i = q["question"].index(words[0])
        j = q["question"].index(words[-1]) + len(words[-1])
        if j <= i:
            continue
        swapped = q["question"][:i] + other + q["question"][j:]
        out.append((q["question"], swapped, probe(engine, q["question"]), probe(engine, swapped)))
    return out


def rates(rows, margin: float, named_max: float) -> tuple[float, float]:
    def corrected(r: dict) -> bool:
        return r["stands"] and r["named"] < named_max and r["alt"] - r["named"] >= margin

    n = max(len(rows), 1)
    return sum(corrected(a) for _, _, a, _ in rows) / n, sum(corrected(b) for _, _, _, b in rows) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-store", default="/tmp/fit/train")
    ap.add_argument("--dev-store", default="/tmp/fit/dev")
    ap.add_argument("--train", default=str(ROOT.parent / "shared/data/qmsum-committee-train/questions.jsonl"))
    ap.add_argument("--dev", default=str(ROOT / "eval/qmsum-committee-val/questions.jsonl"))
    ap.add_argument("--max-wrong", type=float, default=0.025, help="largest share of real questions corrected")
    args = ap.parse_args()
    splits = {}
    for name, store, qpath in (("train", args.train_store, args.train), ("dev", args.dev_store, args.dev)):
        engine = Engine(load_settings(store=store))
        splits[name] = pairs(engine, _load(Path(qpath)))
        print(f"{name}: {len(splits[name])} questions naming a speaker, each also asked of another speaker")
    print("\n| margin | named under | train: real corrected | train: swapped corrected | dev: real corrected | dev: swapped corrected |")
    print("|---:|---:|---:|---:|---:|---:|")
    grid = [(m, c) for m in MARGINS for c in NAMED_MAX]
    for m, c in grid:
        tr, dv = rates(splits["train"], m, c), rates(splits["dev"], m, c)
        print(f"| {m} | {c} | {tr[0]:.3f} | {tr[1]:.3f} | {dv[0]:.3f} | {dv[1]:.3f} |")
    ok = [g for g in grid if rates(splits["train"], *g)[0] <= args.max_wrong]
    # the most swapped questions corrected; then the fewest real ones; then the larger margin
    best = max(ok, key=lambda g: (rates(splits["train"], *g)[1], -rates(splits["train"], *g)[0], g[0])) if ok else None
    print(f"\nchosen on train (at most {args.max_wrong:.1%} of real questions corrected): "
          + (f"premise_margin = {best[0]}, premise_named_max = {best[1]}" if best else "none qualifies"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
