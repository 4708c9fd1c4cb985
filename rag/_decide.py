"""Decide: answer, or say the transcripts do not answer it (the last step of plan -> retrieve ->
select -> decide)."""

from __future__ import annotations


def decide(plan, evidence: float, has_sentences: bool, threshold: float) -> bool:
    """Abstain? When the best quoted sentence supports the question less than ``threshold``,
    unless the question asks only who said something ("What did the reader say?": their words
    answer it); and always when it names something the transcripts never mention."""
    if not has_sentences:
        return True
    if plan.unknown_names:
        return True
    if plan.refers and not plan.topic:
        return False
    return evidence < threshold
