"""Decide: answer, or say the transcripts do not answer it (the last step of plan -> retrieve ->
select -> decide).

By default the decision is the earlier rule (evidence under ``Settings.abstain_threshold``, a name
the transcripts never mention) as a floor, then a fitted logistic regression over features of the
whole answer (rag/_refusal.py; weights, bias and threshold in ``Settings.refusal``, fitted by
scripts/fit_refusal.py). ``Settings.refusal.model = "threshold"`` keeps the earlier rule alone.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from . import _refusal


def decide(plan, evidence: float, chosen: Sequence, top: Sequence = (), *, idf: Mapping[str, float] | None = None,
           vocab: set[str] | None = None, settings=None, threshold: float = 0.35) -> bool:
    """Abstain? Always when there is no sentence to quote. Then the earlier rule, kept as a floor:
    abstain when the question names something the transcripts never mention, or when the best
    quoted sentence's ``evidence`` is under ``threshold`` (``Settings.abstain_threshold``); a
    question that only asks what a named speaker said ("What did the reader say?") is answered by
    their words. Then, with ``settings`` (a ``RefusalSettings`` whose ``model`` is "fitted"), the
    fitted model: abstain when the probability that the transcripts do not answer the question
    reaches ``settings.threshold``. The model alone answers the seed set's off-topic questions
    (France, passwords) too often: docs/EVALUATION.md, "Refusal"."""
    if not chosen:
        return True
    if plan.unknown_names:
        return True
    if plan.refers and not plan.topic:
        return False
    if evidence < threshold:
        return True
    if settings is None or settings.model == "threshold":
        return False
    return refusal_probability(plan, evidence, chosen, top, idf=idf or {}, vocab=vocab or set(), settings=settings) >= settings.threshold


def refusal_probability(plan, evidence: float, chosen: Sequence, top: Sequence, *, idf: Mapping[str, float],
                        vocab: set[str], settings) -> float:
    """P(the transcripts do not answer it) under the fitted model in ``settings``."""
    f = _refusal.features(plan, top, chosen, evidence, idf=idf, vocab=vocab)
    return _refusal.probability(f.values, settings.weights, settings.bias)
