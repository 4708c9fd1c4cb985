"""Evaluation: run a question set through the engine (and, if asked, the baselines) and measure
retrieval, citations, answers, abstention and latency. Behind `rag eval`.

Question sets are JSONL (YAML or a JSON list accepted), one record per question::

    {"id": "bangladesh", "question": "What can we learn from Bangladesh?",
     "sources": [{"transcript": "interview.txt", "quote": "exact words from the transcript"}],
     "answer": "reference answer (optional)", "must_mention": ["Bangladesh"],
     "expect_no_answer": false, "style": "specific", "filters": {"speaker": "Shah"},
     "follow_up_of": "<id of the question this one follows>"}

A quote is found in its transcript's text (as stored at ingest) exactly, else after unifying
whitespace, quote marks and dashes; the match is mapped back to exact offsets of the original
text. A retrieved or cited passage is correct when its ``start_char..end_char`` overlaps a gold
range of the same transcript.

Metric definitions (per question, then averaged over the questions where they are defined):

* ``hit@1``, ``hit@k``: a correct passage at rank 1 / in the top k.
* ``recall@k``: share of the question's gold sources overlapped by the top k.
* ``mrr@10``: 1 / rank of the first correct passage in the top 10 (0 if none).
* ``ndcg@10``: one unit of gain per gold source, credited at the rank of the first passage that
  overlaps it (later passages overlapping the same source add nothing); the ideal puts every
  source at the top. Independent of how finely a system chunks, so ours and the baselines compare.
* ``citation_precision``: cited passages that overlap a gold source / citations (answered
  questions with gold sources); ``citation_recall``: gold sources overlapped by a cited passage.
  ``citation_quote_precision``: citations whose highlighted sentences themselves overlap gold.
* ``citation_speaker_accuracy``: citations whose highlighted words were all spoken by the speaker
  the citation names (``Citation.speaker``, else the passage's speaker): each highlight lies
  inside the source ranges of that speaker's words in the passage (the answer's segments, or the
  question's when it is the asker). Over questions with citations.
* ``must_mention``: share of the ``must_mention`` terms found in the answer; ``key_fact``: 1 when
  the answer contains every one of them, else 0 (both fold case, accents and punctuation).
* ``answer_f1``: content-word F1 of the answer against the reference ``answer``: the words of
  :func:`rag._text.content_words` (folded, STOPWORDS and one-letter words dropped, citation
  markers removed). ``top_passage_f1``: the same for a "top passage" baseline, the first
  retrieved passage's text cut to ``TOP_PASSAGE_WORDS`` words. ``token_f1`` (SQuAD-style bag of
  words) and ``rouge_l`` (LCS F-measure) of the answer against the reference.
* ``abstain_accuracy``: the engine abstains exactly when ``expect_no_answer``; also
  ``false_abstain_rate`` (answerable questions refused) and ``false_answer_rate``.
* ``latency_p50_ms``, ``latency_p95_ms``: wall clock of ``Engine.ask`` after a warm-up.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ._errors import QuestionSetError, RagError
from ._settings import Settings
from ._text import content_words, fold, safe, safe_text

Range = tuple[str, int, int]  # (transcript, start, end)

DEPTH = 10  # ranks looked at by MRR and nDCG
# Length budget of the "top passage" baseline: about what an extractive answer of a few quoted
# sentences runs to, so the two F1 figures compare like with like.
TOP_PASSAGE_WORDS = 120
ANSWER_METRICS = (
    "citation_precision", "citation_recall", "citation_quote_precision", "citation_speaker_accuracy",
    "must_mention", "key_fact", "answer_f1", "top_passage_f1", "token_f1", "rouge_l",
)
TRADEOFF_THRESHOLDS = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)
_KNOWN_KEYS = {"id", "question", "sources", "answer", "must_mention", "expect_no_answer", "style", "filters", "follow_up_of"}


def retrieval_keys(k: int) -> list[str]:
    return ["hit@1", f"hit@{k}", f"recall@{k}", "mrr@10", "ndcg@10"]


def metric_keys(k: int) -> list[str]:
    return [
        *retrieval_keys(k), "citation_precision", "citation_recall", "citation_quote_precision",
        "citation_speaker_accuracy", "must_mention", "key_fact", "answer_f1", "top_passage_f1",
        "token_f1", "rouge_l", "abstain_accuracy", "false_abstain_rate",
        "false_answer_rate", "latency_p50_ms", "latency_p95_ms",
    ]


# ============================================================================ question sets


def load_questions(path: str | Path) -> list[dict[str, Any]]:
    """Read and check a question set (JSONL; ``.yaml``/``.yml`` or a ``.json`` list accepted).
    Returns normalised records: every key of the format present, defaults filled in."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise QuestionSetError(f"question set {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise QuestionSetError(f"cannot read question set {path}: {exc}") from None
    records: list[tuple[str, Any]] = []  # (where, record)
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise QuestionSetError(f"{path}: not valid YAML: {exc}") from None
        if isinstance(data, dict) and "questions" in data:
            data = data["questions"]
        if not isinstance(data, list):
            raise QuestionSetError(f"{path}: expected a list of questions (or a `questions:` list)")
        records = [(f"{path}: question {i + 1}", r) for i, r in enumerate(data)]
    elif suffix == ".json" and raw.lstrip().startswith("["):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise QuestionSetError(f"{path}: not valid JSON: {exc}") from None
        records = [(f"{path}: question {i + 1}", r) for i, r in enumerate(data)]
    else:
        for n, line in enumerate(raw.splitlines(), 1):
            if not line.strip() or line.lstrip().startswith(("#", "//")):
                continue
            try:
                records.append((f"{path}:{n}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise QuestionSetError(f"{path}:{n}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not records:
        raise QuestionSetError(f"{path}: no questions")
    return validate_questions(records)


def validate_questions(records: Iterable[Any]) -> list[dict[str, Any]]:
    """Check records (dicts, or (where, dict) pairs) and fill in defaults."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, item in enumerate(records):
        where, rec = item if isinstance(item, tuple) else (f"record {i + 1}", item)
        if not isinstance(rec, dict):
            raise QuestionSetError(f"{where}: a question must be an object, got {type(rec).__name__}")
        qid = rec.get("id")
        if qid in (None, ""):
            raise QuestionSetError(f"{where}: the question has no `id`")
        qid = str(qid)
        name = f"{where} (question {qid!r})"
        if qid in seen:
            raise QuestionSetError(f"{name}: duplicate id")
        seen.add(qid)
        question = rec.get("question")
        if not isinstance(question, str) or not question.strip():
            raise QuestionSetError(f"{name}: `question` must be a non-empty string")
        sources = rec.get("sources") or []
        if not isinstance(sources, list):
            raise QuestionSetError(f"{name}: `sources` must be a list of {{transcript, quote}}")
        clean_sources = []
        for j, s in enumerate(sources):
            if not isinstance(s, dict) or not isinstance(s.get("transcript"), str) or not isinstance(s.get("quote"), str):
                raise QuestionSetError(f"{name}: source {j + 1} needs a `transcript` and a `quote` (strings)")
            if not s["quote"].strip():
                raise QuestionSetError(f"{name}: source {j + 1} has an empty quote")
            clean_sources.append({"transcript": s["transcript"], "quote": s["quote"]})
        mm = rec.get("must_mention") or []
        if isinstance(mm, str):
            mm = [mm]
        if not isinstance(mm, list) or not all(isinstance(m, str) and m.strip() for m in mm):
            raise QuestionSetError(f"{name}: `must_mention` must be a list of strings")
        filters = rec.get("filters") or {}
        if not isinstance(filters, dict):
            raise QuestionSetError(f"{name}: `filters` must be an object, e.g. {{\"speaker\": \"Shah\"}}")
        answer = rec.get("answer")
        if answer is not None and not isinstance(answer, str):
            raise QuestionSetError(f"{name}: `answer` must be a string")
        expect = rec.get("expect_no_answer", False)
        if not isinstance(expect, bool):
            raise QuestionSetError(f"{name}: `expect_no_answer` must be true or false")
        follow = rec.get("follow_up_of")
        out.append({
            **{k: v for k, v in rec.items() if k not in _KNOWN_KEYS},
            "id": qid,
            "question": question.strip(),
            "sources": clean_sources,
            "answer": answer or None,
            "must_mention": list(mm),
            "expect_no_answer": expect,
            "style": str(rec.get("style") or "unspecified"),
            "filters": dict(filters),
            "follow_up_of": str(follow) if follow not in (None, "") else None,
            "_where": name,
        })
    by_id = {q["id"]: q for q in out}
    for q in out:
        seen_chain = {q["id"]}
        parent = q["follow_up_of"]
        while parent is not None:
            if parent not in by_id:
                raise QuestionSetError(f"{q['_where']}: `follow_up_of` names {parent!r}, which is not in the set")
            if parent in seen_chain:
                raise QuestionSetError(f"{q['_where']}: `follow_up_of` goes round in a circle")
            seen_chain.add(parent)
            parent = by_id[parent]["follow_up_of"]
    return out


# ============================================================================ locating quotes

_CHAR_MAP = {
    "\u2019": "'", "\u2018": "'", "\u201b": "'", "\u2032": "'", "`": "'", "\u00b4": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2013": "-", "\u2014": "-", "\u2011": "-", "\u2010": "-", "\u2212": "-",
    "\u2026": "...",
}


def normalise(text: str) -> tuple[str, list[int]]:
    """Unify quote marks, dashes and ellipses and collapse whitespace runs to one space.
    Returns the new text and, for each of its characters, the index it came from."""
    out: list[str] = []
    pos: list[int] = []
    space = False
    for i, ch in enumerate(text):
        if ch.isspace():
            if not space:
                out.append(" ")
                pos.append(i)
            space = True
            continue
        space = False
        rep = _CHAR_MAP.get(ch, ch)
        out.append(rep)
        pos.extend([i] * len(rep))
    return "".join(out), pos


def locate_quote(text: str, quote: str) -> list[tuple[int, int]]:
    """Every place the quote occurs in ``text`` as ``[start, end)`` offsets of ``text``: exact
    matches if any, else matches after :func:`normalise`. Empty when it is not there."""
    q = quote.strip()
    if not q:
        return []
    spans = _find_all(text, q)
    if spans:
        return spans
    norm_text, pos = normalise(text)
    norm_q = normalise(q)[0].strip()
    out = []
    for a, b in _find_all(norm_text, norm_q):
        out.append((pos[a], pos[b - 1] + 1))
    return out


def _find_all(hay: str, needle: str) -> list[tuple[int, int]]:
    out = []
    at = hay.find(needle)
    while at >= 0:
        out.append((at, at + len(needle)))
        at = hay.find(needle, at + len(needle))
    return out


def locate_sources(questions: list[dict[str, Any]], text_of: Callable[[str], str]) -> dict[str, list[list[Range]]]:
    """Gold ranges of every question: per source, the ranges where its quote occurs.
    ``text_of(transcript_id)`` gives a transcript's text and raises KeyError when unknown."""
    cache: dict[str, str | None] = {}
    gold: dict[str, list[list[Range]]] = {}
    for q in questions:
        sources = []
        for j, s in enumerate(q["sources"]):
            tid = s["transcript"]
            if tid not in cache:
                try:
                    cache[tid] = text_of(tid)
                except KeyError:
                    cache[tid] = None
            text = cache[tid]
            where = q.get("_where") or f"question {q['id']!r}"
            if text is None:
                raise QuestionSetError(
                    f"{where}: transcript {tid!r} is not in the store",
                    "Ingest the question set's transcripts first (`rag ingest FOLDER`); a transcript's id is "
                    "its path relative to the folder given to ingest.",
                )
            spans = locate_quote(text, s["quote"])
            if not spans:
                snippet = s["quote"].strip().replace("\n", " ")
                snippet = snippet if len(snippet) <= 80 else snippet[:77] + "..."
                raise QuestionSetError(
                    f"{where}: quote {j + 1} is not in {tid}: \"{snippet}\"",
                    "Copy the quote from the transcript exactly (whitespace and quote marks may differ).",
                )
            sources.append([(tid, a, b) for a, b in spans])
        gold[q["id"]] = sources
    return gold


# ============================================================================ metrics


def overlaps(a: Range, b: Range) -> bool:
    return a[0] == b[0] and a[1] < b[2] and b[1] < a[2]


def coverage(ranked: Sequence[Range], gold: Sequence[Sequence[Range]]) -> list[set[int]]:
    """For each ranked item, the indexes of the gold sources it overlaps."""
    return [{j for j, src in enumerate(gold) if any(overlaps(item, g) for g in src)} for item in ranked]


def hit_at(covers: Sequence[set[int]], k: int) -> float:
    return 1.0 if any(covers[:k]) else 0.0


def recall_at(covers: Sequence[set[int]], n_sources: int, k: int) -> float:
    if n_sources == 0:
        return 0.0
    found: set[int] = set()
    for c in covers[:k]:
        found |= c
    return len(found) / n_sources


def mrr_at(covers: Sequence[set[int]], k: int = DEPTH) -> float:
    for r, c in enumerate(covers[:k], 1):
        if c:
            return 1.0 / r
    return 0.0


def ndcg_at(covers: Sequence[set[int]], n_sources: int, k: int = DEPTH) -> float:
    """Binary gain for the first passage to overlap each gold source (at most 1 per rank)."""
    if n_sources == 0:
        return 0.0
    seen: set[int] = set()
    dcg = 0.0
    for r, c in enumerate(covers[:k], 1):
        new = c - seen
        if new:
            dcg += 1.0 / math.log2(r + 1)
            seen |= c
    ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(n_sources, k) + 1))
    return dcg / ideal


def retrieval_scores(ranked: Sequence[Range], gold: Sequence[Sequence[Range]], k: int) -> dict[str, Any]:
    covers = coverage(ranked[: max(k, DEPTH)], gold)
    first = next((r for r, c in enumerate(covers[:DEPTH], 1) if c), None)
    return {
        "hit@1": hit_at(covers, 1),
        f"hit@{k}": hit_at(covers, k),
        f"recall@{k}": recall_at(covers, len(gold), k),
        "mrr@10": mrr_at(covers, DEPTH),
        "ndcg@10": ndcg_at(covers, len(gold), DEPTH),
        "first_relevant_rank": first,
    }


_CITE = re.compile(r"\s*\[\d+(?:\s*[,–-]\s*\d+)*\]")
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
_ARTICLES = {"a", "an", "the"}


def answer_tokens(text: str, drop_articles: bool = True) -> list[str]:
    toks = _TOKEN.findall(fold(_CITE.sub("", text or "")))
    return [t for t in toks if not (drop_articles and t in _ARTICLES)]


def _bag_f1(p: Sequence[str], r: Sequence[str]) -> float:
    if not p or not r:
        return float(len(p) == len(r))
    from collections import Counter

    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD-style token F1: bag-of-words overlap, lowercase, punctuation and articles dropped."""
    return _bag_f1(answer_tokens(prediction), answer_tokens(reference))


def answer_words(text: str) -> list[str]:
    """The content words of an answer: citation markers removed, case and accents folded, the
    project's STOPWORDS and one-letter words dropped (:func:`rag._text.content_words`)."""
    return content_words(fold(_CITE.sub("", text or "")))


def answer_f1(prediction: str, reference: str) -> float:
    """Content-word F1: bag-of-words overlap of :func:`answer_words`, so agreeing on "the", "of"
    and "that" earns nothing."""
    return _bag_f1(answer_words(prediction), answer_words(reference))


def cut_words(text: str, n: int = TOP_PASSAGE_WORDS) -> str:
    """The first ``n`` whitespace-separated words of ``text``."""
    return " ".join((text or "").split()[:n])


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (beta = 1) on lowercase word tokens."""
    p, r = answer_tokens(prediction, False), answer_tokens(reference, False)
    if not p or not r:
        return float(p == r)
    lcs = _lcs(p, r)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


def _mentions(answer: str, terms: Sequence[str]) -> list[bool]:
    """For each term, whether the answer contains it as a run of whole words (case, accents and
    punctuation folded)."""
    text = " " + " ".join(answer_tokens(answer, False)) + " "
    return [" " + " ".join(answer_tokens(t, False)) + " " in text for t in terms]


def must_mention_coverage(answer: str, terms: Sequence[str]) -> float | None:
    if not terms:
        return None
    return sum(_mentions(answer, terms)) / len(terms)


def key_fact(answer: str, terms: Sequence[str]) -> float | None:
    """1.0 when the answer contains every ``must_mention`` term, else 0.0; None without terms."""
    if not terms:
        return None
    return float(all(_mentions(answer, terms)))


def _same_speaker(a: str | None, b: str | None) -> bool:
    """Same speaker name (case and accents folded); two blanks match: an introduction's words
    belong to no named speaker, and a citation naming none attributes them rightly."""
    return fold(a or "").strip() == fold(b or "").strip()


def spoken_ranges(passage: Any, speaker: str) -> list[tuple[int, int]]:
    """Source ranges of the words ``speaker`` says in ``passage``: the answer's segments when it
    is the passage's speaker, the question's when it is the asker (both when both)."""
    out: list[tuple[int, int]] = []
    if _same_speaker(speaker, passage.speaker):
        out += [(s.start, s.end) for s in passage.segments]
    if _same_speaker(speaker, getattr(passage, "question_speaker", "")):
        out += [(s.start, s.end) for s in getattr(passage, "question_segments", None) or []]
    return out


def _covered(a: int, b: int, ranges: Sequence[tuple[int, int]]) -> bool:
    """Whether ``[a, b)`` lies inside the union of ``ranges``."""
    pos = a
    for lo, hi in sorted(ranges):
        if pos >= b:
            break
        if hi <= pos:
            continue
        if lo > pos:
            return False
        pos = hi
    return pos >= b


def _quote_ranges(c: Any) -> list[tuple[int, int]]:
    """A citation's quoted words as source ranges: its highlights; without any, the quote found
    in the passage's answer text, else in its question."""
    if c.highlights:
        return [(int(a), int(b)) for a, b in c.highlights]
    p = c.passage
    for text, spans in ((p.text, p.source_spans), (getattr(p, "question", ""), getattr(p, "question_spans", None))):
        found = locate_quote(text or "", c.quote or "") if spans else []
        if found:
            return spans(*found[0])
    return []


def citation_speaker_ok(c: Any) -> bool:
    """The citation's quoted words were all spoken by the speaker it names (``c.speaker``; a
    citation without that attribute names the passage's speaker). A blank speaker names nobody:
    right only for words no named speaker said (an introduction)."""
    speaker = getattr(c, "speaker", c.passage.speaker)
    quoted = _quote_ranges(c)
    allowed = spoken_ranges(c.passage, speaker)
    return bool(quoted) and all(_covered(a, b, allowed) for a, b in quoted)


def abstention_accuracy(pairs: Iterable[tuple[bool, bool]]) -> float | None:
    """Share of (abstained, expect_no_answer) pairs that agree."""
    pairs = list(pairs)
    if not pairs:
        return None
    return sum(1 for a, e in pairs if bool(a) == bool(e)) / len(pairs)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolation percentile (as numpy's default)."""
    vals = sorted(values)
    if not vals:
        return None
    pos = (len(vals) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return vals[lo] + (vals[hi] - vals[lo]) * (pos - lo)


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _r(v: float | None, nd: int = 4) -> float | None:
    return None if v is None else round(float(v), nd)


def aggregate(rows: list[dict[str, Any]], k: int) -> dict[str, Any]:
    """Totals over per-question rows (each metric averaged where it is defined)."""
    m: dict[str, Any] = {}
    for key in retrieval_keys(k):
        m[key] = _r(_mean(r.get(key) for r in rows))
    for key in ANSWER_METRICS:
        m[key] = _r(_mean(r.get(key) for r in rows))
    m["abstain_accuracy"] = _r(abstention_accuracy((r["abstained"], r["expect_no_answer"]) for r in rows))
    answerable = [r for r in rows if not r["expect_no_answer"]]
    unanswerable = [r for r in rows if r["expect_no_answer"]]
    m["false_abstain_rate"] = _r(_mean(float(r["abstained"]) for r in answerable))
    m["false_answer_rate"] = _r(_mean(float(not r["abstained"]) for r in unanswerable))
    lat = [r["latency_ms"] for r in rows if r.get("latency_ms") is not None]
    m["latency_p50_ms"] = _r(percentile(lat, 50), 1)
    m["latency_p95_ms"] = _r(percentile(lat, 95), 1)
    m["n_answerable"] = len(answerable)
    m["n_unanswerable"] = len(unanswerable)
    m["n_with_sources"] = sum(1 for r in rows if r.get("hit@1") is not None)
    return m


def by_style(rows: list[dict[str, Any]], k: int) -> dict[str, dict[str, Any]]:
    styles: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        styles.setdefault(r["style"], []).append(r)
    return {s: {"n": len(rs), **aggregate(rs, k)} for s, rs in sorted(styles.items())}


def tradeoff(rows: list[dict[str, Any]], thresholds: Sequence[float] = TRADEOFF_THRESHOLDS, current: float | None = None) -> dict[str, Any]:
    """What abstaining below each evidence threshold would do: the share of answerable questions
    wrongly abstained on and of unanswerable ones wrongly answered."""
    scored = [r for r in rows if r.get("evidence") is not None]
    ts = sorted(set(list(thresholds) + ([round(current, 4)] if current is not None else [])))
    answerable = [r["evidence"] for r in scored if not r["expect_no_answer"]]
    unanswerable = [r["evidence"] for r in scored if r["expect_no_answer"]]
    out_rows = []
    for t in ts:
        fa = _mean(float(e < t) for e in answerable)
        fn = _mean(float(e >= t) for e in unanswerable)
        acc = _mean([float(e >= t) for e in answerable] + [float(e < t) for e in unanswerable])
        out_rows.append({"threshold": t, "answerable_abstained": _r(fa), "unanswerable_answered": _r(fn), "abstain_accuracy": _r(acc)})

    def dist(vals: list[float]) -> dict[str, Any]:
        return {"n": len(vals), "min": _r(min(vals)) if vals else None, "p10": _r(percentile(vals, 10)),
                "median": _r(percentile(vals, 50)), "p90": _r(percentile(vals, 90)), "max": _r(max(vals)) if vals else None}

    return {"current": current, "rows": out_rows, "evidence": {"answerable": dist(answerable), "unanswerable": dist(unanswerable)}}


# ============================================================================ running


def _passage_range(p: Any) -> Range:
    return (p.transcript, int(p.start_char), int(p.end_char))


def _deep_ranking(engine: Any, q: dict[str, Any], answer: Any, history: list[Any], k: int) -> list[Any]:
    """The answer's top k, continued to DEPTH ranks with the engine's own ranking (same query,
    same pool) so MRR@10 and nDCG@10 see ten ranks even when k is 5."""
    top = list(answer.retrieved)
    if len(top) >= DEPTH or not hasattr(engine, "retrieve"):
        return top
    try:
        _, _, deep = engine.retrieve(q["question"], filters=q["filters"] or None, k=k, history=history)
    except Exception:  # the engine is free to change; MRR then uses the ranks it gave
        return top
    seen = {r.passage.chunk_id for r in top}
    return top + [r for r in deep if r.passage.chunk_id not in seen][: DEPTH - len(top)]


def _ask_order(questions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_id = {q["id"]: q for q in questions}
    done: set[str] = set()
    order: list[dict[str, Any]] = []

    def visit(q: dict[str, Any]) -> None:
        if q["id"] in done:
            return
        if q["follow_up_of"]:
            visit(by_id[q["follow_up_of"]])
        done.add(q["id"])
        order.append(q)

    for q in questions:
        visit(q)
    return order


def _engine_row(q: dict[str, Any], gold: list[list[Range]], answer: Any, ranked: list[Any], k: int, latency: float) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": q["id"],
        "question": q["question"],
        "style": q["style"],
        "expect_no_answer": q["expect_no_answer"],
    }
    if q["follow_up_of"]:
        row["follow_up_of"] = q["follow_up_of"]
        row["resolved_question"] = getattr(answer, "resolved_question", "") or q["question"]
    if gold:
        row.update(retrieval_scores([_passage_range(r.passage) for r in ranked], gold, k))
    else:
        row.update({key: None for key in retrieval_keys(k)})
        row["first_relevant_rank"] = None
    cits = list(answer.citations)
    cit_cover = coverage([_passage_range(c.passage) for c in cits], gold) if gold else [set() for _ in cits]
    quote_ok = [
        any(overlaps((c.passage.transcript, a, b), g) for a, b in c.highlights for src in gold for g in src) for c in cits
    ]
    if gold and not q["expect_no_answer"]:
        row["citation_precision"] = _mean(float(bool(c)) for c in cit_cover) if cits else None
        row["citation_quote_precision"] = _mean(float(x) for x in quote_ok) if cits else None
        row["citation_recall"] = recall_at(cit_cover, len(gold), len(cit_cover))
    else:
        row["citation_precision"] = row["citation_quote_precision"] = row["citation_recall"] = None
    speaker_ok = [citation_speaker_ok(c) for c in cits]
    row["citation_speaker_accuracy"] = _mean(float(x) for x in speaker_ok) if cits else None
    text = answer.text or ""
    answerable = not q["expect_no_answer"]
    row["must_mention"] = must_mention_coverage(text, q["must_mention"]) if answerable else None
    row["key_fact"] = key_fact(text, q["must_mention"]) if answerable else None
    top = cut_words(ranked[0].passage.text) if ranked else ""
    if q["answer"] and answerable:
        row["answer_f1"] = answer_f1(text, q["answer"])
        row["top_passage_f1"] = answer_f1(top, q["answer"])
        row["token_f1"] = token_f1(text, q["answer"])
        row["rouge_l"] = rouge_l(text, q["answer"])
    else:
        row["answer_f1"] = row["top_passage_f1"] = row["token_f1"] = row["rouge_l"] = None
    row["abstained"] = bool(answer.abstained)
    row["abstain_correct"] = bool(answer.abstained) == q["expect_no_answer"]
    ev = getattr(answer, "evidence", None)
    row["evidence"] = None if ev is None else round(float(ev), 4)
    row["latency_ms"] = round(latency, 2)
    row["timings_ms"] = {key: round(float(v), 2) for key, v in (getattr(answer, "timings_ms", None) or {}).items()}
    row["answer"] = text
    row["gold"] = [{"transcript": t, "start_char": a, "end_char": b} for src in gold for t, a, b in src]
    # the first k, and any cited beyond them (an overview cites up to answer.overview_questions + 1)
    cited = {c.passage.chunk_id for c in cits}
    shown = max([k] + [i + 1 for i, r in enumerate(ranked) if r.passage.chunk_id in cited])
    row["retrieved"] = [
        {"rank": i, "chunk_id": r.passage.chunk_id, "transcript": r.passage.transcript,
         "start_char": r.passage.start_char, "end_char": r.passage.end_char,
         "score": round(float(r.score), 6), "speaker": r.passage.speaker, "correct": bool(c)}
        for i, (r, c) in enumerate(zip(ranked[:shown], coverage([_passage_range(r.passage) for r in ranked[:shown]], gold)
                                       if gold else [set()] * shown), 1)
    ]
    row["citations"] = [
        {"n": c.n, "chunk_id": c.passage.chunk_id, "transcript": c.passage.transcript,
         "start_char": c.passage.start_char, "end_char": c.passage.end_char, "quote": c.quote,
         "highlights": [list(h) for h in c.highlights], "correct": bool(cc) if gold else None,
         "speaker": getattr(c, "speaker", c.passage.speaker), "speaker_correct": ok}
        for c, cc, ok in zip(cits, cit_cover, speaker_ok)
    ]
    row["top_passage"] = top
    return row


def _baseline_row(q: dict[str, Any], gold: list[list[Range]], chunks: list[Any], k: int, latency: float) -> dict[str, Any]:
    """Baselines have no answer step: they show their top k chunks as sources and never abstain."""
    row: dict[str, Any] = {"id": q["id"], "style": q["style"], "expect_no_answer": q["expect_no_answer"]}
    ranges = [(c.transcript, c.start_char, c.end_char) for c in chunks]
    if gold:
        row.update(retrieval_scores(ranges, gold, k))
        covers = coverage(ranges[:k], gold)
        if not q["expect_no_answer"]:
            row["citation_precision"] = _mean(float(bool(c)) for c in covers) if covers else None
            row["citation_recall"] = recall_at(covers, len(gold), k)
    else:
        row.update({key: None for key in retrieval_keys(k)})
        row["first_relevant_rank"] = None
    row["abstained"] = False
    row["abstain_correct"] = not q["expect_no_answer"]
    row["latency_ms"] = round(latency, 2)
    row["retrieved"] = [dict(c.to_dict(), rank=i) for i, c in enumerate(chunks[:k], 1)]
    return row


def evaluate(
    questions_path_or_list: str | Path | list[dict[str, Any]],
    settings: Settings,
    *,
    k: int = 5,
    engine: Any = None,
    progress: Callable[[int, int], None] | None = None,
    baselines: Sequence[str] = (),
    transcripts: str | Path | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run a question set through the engine (and the named baselines: "naive", "bm25") and
    return the report (the `rag eval --json` shape). The baselines search every transcript in
    the store, as ours does; ``transcripts``: the folder they were ingested from, to read them
    there instead. ``progress(done, total)`` counts questions
    (each baseline's pass counts again); ``on_stage(name)`` says what is running."""
    stage = on_stage or (lambda name: None)
    if isinstance(questions_path_or_list, (str, Path)):
        source_name: str | None = str(questions_path_or_list)
        questions = load_questions(questions_path_or_list)
    else:
        source_name = None
        questions = validate_questions(list(questions_path_or_list))
    if k < 1:
        raise QuestionSetError(f"k must be at least 1, got {k}")
    baselines = tuple(dict.fromkeys(baselines))
    for b in baselines:
        from ._baselines import NAMES

        if b not in NAMES:
            raise RagError(f"unknown baseline {b!r}", f"Use one of: {', '.join(NAMES)}.")
    if engine is None:
        from ._engine import Engine

        engine = Engine(settings)
    gold = locate_sources(questions, engine.source_text)

    total = len(questions) * (1 + len(baselines))
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)

    if progress:
        progress(0, total)
    stage("loading")
    warm = getattr(engine, "warm", None)
    if callable(warm):
        warm()
    answers: dict[str, Any] = {}
    histories: dict[str, list[Any]] = {}
    rows: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    stage("asking")
    for q in _ask_order(questions):
        history = []
        if q["follow_up_of"]:
            parent = q["follow_up_of"]
            history = histories[parent] + [answers[parent]]
        t0 = time.perf_counter()
        answer = engine.ask(q["question"], history=history, filters=q["filters"] or None, k=k)
        latency = (time.perf_counter() - t0) * 1000
        answers[q["id"]] = answer
        histories[q["id"]] = history
        ranked = _deep_ranking(engine, q, answer, history, k)
        rows[q["id"]] = _engine_row(q, gold[q["id"]], answer, ranked, k, latency)
        tick()
    ordered = [rows[q["id"]] for q in questions]
    report: dict[str, Any] = {
        "n": len(questions),
        "k": k,
        "questions_file": source_name,
        "store": settings.describe_store(),
        "model": settings.model,
        "abstain_threshold": settings.abstain_threshold,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 2),
        "metrics": aggregate(ordered, k),
        "by_style": by_style(ordered, k),
        "abstention_tradeoff": tradeoff(ordered, current=settings.abstain_threshold),
        "questions": ordered,
    }
    if baselines:
        report["baselines"] = _run_baselines(baselines, questions, gold, engine, settings, k, transcripts, tick, stage)
    return report


def _baseline_texts(engine: Any, transcripts: str | Path | None) -> dict[str, str]:
    """The baselines' corpus: exactly the transcripts our engine searches, every one in the store
    (not only those the question set names, which would hand the baselines a smaller haystack).
    With ``transcripts`` (the folder they were ingested from) each is read from its file there,
    which must be the version in the store (same SHA-256)."""
    infos = engine.transcripts()
    if not infos:
        raise QuestionSetError("the baselines need transcripts: the store is empty", "Ingest them first: `rag ingest FOLDER`.")
    texts: dict[str, str] = {}
    for tid in sorted(infos):
        if transcripts is None:
            texts[tid] = engine.source_text(tid)
            continue
        from ._ingest import file_hash
        from ._text import decode

        path = Path(transcripts) / tid
        hint = "--transcripts must be the folder the store's transcripts were ingested from, as ingested."
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise QuestionSetError(f"cannot read {path} for the baselines: {exc.strerror or exc}", hint) from None
        stored = getattr(infos[tid], "hash", "")
        if stored and file_hash(data) != stored:
            raise QuestionSetError(f"{path} is not the version of {tid} in the store (it changed since it was ingested)",
                                   hint + " Ingest it again, or leave out --transcripts.")
        texts[tid] = decode(data, tid)[0]
    return texts


def _run_baselines(names: Sequence[str], questions: list[dict[str, Any]], gold: dict[str, list[list[Range]]],
                   engine: Any, settings: Settings, k: int, transcripts: str | Path | None, tick: Callable[[], None],
                   stage: Callable[[str], None]) -> dict[str, Any]:
    from . import _baselines
    from ._embed import resolve_model

    texts = _baseline_texts(engine, transcripts)
    if transcripts is not None:  # offsets into the files read: locate the quotes there
        gold = locate_sources(questions, lambda tid: texts[tid] if tid in texts else engine.source_text(tid))
    out: dict[str, Any] = {}
    for name in names:
        ranked, latencies, info = _baselines.run(
            name, texts, questions, k=k, model_path=resolve_model(settings.model) if name == "naive" else None,
            depth=DEPTH, on_question=tick, on_stage=lambda what, name=name: stage(f"{name}: {what}"),
        )
        rows = [_baseline_row(q, gold[q["id"]], chunks, k, lat) for q, chunks, lat in zip(questions, ranked, latencies)]
        out[name] = {**info, "metrics": aggregate(rows, k), "by_style": by_style(rows, k), "questions": rows}
    return out


# ============================================================================ output


def _fmt(v: Any, key: str = "") -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and key.endswith("_ms"):
        return f"{v:.1f}"
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _systems(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [("ours", report["metrics"])] + [(n, b["metrics"]) for n, b in (report.get("baselines") or {}).items()]


def summary_table(report: dict[str, Any], markdown: bool = False) -> str:
    k = report["k"]
    systems = _systems(report)
    keys = [key for key in metric_keys(k) if any(m.get(key) is not None for _, m in systems)]
    header = ["metric"] + [s for s, _ in systems]
    body = [[key] + [_fmt(m.get(key), key) for _, m in systems] for key in keys]
    return _table(header, body, markdown)


def _table(header: list[str], body: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(str(r[i])) for r in [header] + body) for i in range(len(header))]
    fmt = lambda row: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths)))  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in body])


def style_table(report: dict[str, Any], markdown: bool = False) -> str:
    k = report["k"]
    keys = ["hit@1", f"hit@{k}", "mrr@10", "citation_precision", "abstain_accuracy", "answer_f1", "top_passage_f1"]
    header = ["style", "n"] + keys
    body = [[s, str(m["n"])] + [_fmt(m.get(key), key) for key in keys] for s, m in report["by_style"].items()]
    return _table(header, body, markdown)


def tradeoff_table(report: dict[str, Any], markdown: bool = False) -> str:
    t = report.get("abstention_tradeoff") or {}
    header = ["threshold", "answerable abstained", "unanswerable answered", "abstain accuracy"]
    body = []
    for r in t.get("rows", []):
        mark = " (current)" if t.get("current") is not None and abs(r["threshold"] - t["current"]) < 1e-9 else ""
        body.append([f"{r['threshold']:.2f}{mark}", _fmt(r["answerable_abstained"]), _fmt(r["unanswerable_answered"]), _fmt(r["abstain_accuracy"])])
    return _table(header, body, markdown)


def misses(report: dict[str, Any]) -> list[str]:
    k = report["k"]
    out = []
    for q in report["questions"]:
        problems = []
        if q.get(f"hit@{k}") == 0.0:
            problems.append(f"no correct passage in the top {k}")
        elif q.get("hit@1") == 0.0:
            problems.append(f"first correct passage at rank {q.get('first_relevant_rank')}")
        if not q["abstain_correct"]:
            problems.append("abstained on an answerable question" if q["abstained"] else "answered a question that should be abstained on")
        if q.get("citation_precision") is not None and q["citation_precision"] < 1.0:
            problems.append(f"citation precision {q['citation_precision']:.2f}")
        wrong = [c["n"] for c in q.get("citations", []) if c.get("speaker_correct") is False]
        if wrong:
            problems.append("quote not spoken by the cited speaker in " + ", ".join(f"[{n}]" for n in wrong))
        if q.get("key_fact") == 0.0 and not q["abstained"]:
            problems.append("a must_mention term is missing from the answer")
        if problems:
            out.append(f"{q['id']} ({q['style']}): {'; '.join(problems)} — {q['question']}")
    return out


def to_markdown(report: dict[str, Any]) -> str:
    k = report["k"]
    lines = [
        "# Evaluation report",
        "",
        f"- question set: `{report.get('questions_file') or '(in memory)'}`, {report['n']} questions, k = {k}",
        f"- store: `{report.get('store')}`, model `{report.get('model')}`, abstain threshold {report.get('abstain_threshold')}",
        f"- run: {report.get('created')} ({report.get('seconds')} s)",
        "",
        "## Metrics",
        "",
        summary_table(report, markdown=True),
        "",
    ]
    if report.get("baselines"):
        lines += ["Baselines show their top k chunks as sources (citation precision = share of those chunks that overlap "
                  "gold) and never abstain.", ""]
        for name, b in report["baselines"].items():
            lines.append(f"- **{name}**: {b['description']}; {b['chunks']} chunks over {len(b['transcripts'])} transcript(s), built in {b['build_seconds']} s")
        lines.append("")
    if report["metrics"].get("top_passage_f1") is not None:
        lines += [f"`top_passage_f1` scores the first retrieved passage cut to {TOP_PASSAGE_WORDS} words as if it were the answer: "
                  "what quoting the best passage alone would earn against `answer_f1`.", ""]
    lines += ["## By style", "", style_table(report, markdown=True), ""]
    lines += ["## Abstention threshold", "",
              "Abstaining whenever `Answer.evidence` is below the threshold would give:", "",
              tradeoff_table(report, markdown=True), ""]
    ev = (report.get("abstention_tradeoff") or {}).get("evidence") or {}
    if ev:
        a, u = ev.get("answerable", {}), ev.get("unanswerable", {})
        lines += [f"Evidence of answerable questions: min {_fmt(a.get('min'))}, p10 {_fmt(a.get('p10'))}, median {_fmt(a.get('median'))}; "
                  f"of unanswerable ones: median {_fmt(u.get('median'))}, p90 {_fmt(u.get('p90'))}, max {_fmt(u.get('max'))}.", ""]
    lines += ["## Questions", "", _table(
        ["id", "style", "hit@1", f"hit@{k}", "rank", "cit. prec.", "cit. speaker", "key fact", "answer F1", "top passage F1",
         "abstained", "expected", "evidence", "ms"],
        [[q["id"], q["style"], _fmt(q.get("hit@1")), _fmt(q.get(f"hit@{k}")), _fmt(q.get("first_relevant_rank")),
          _fmt(q.get("citation_precision")), _fmt(q.get("citation_speaker_accuracy")), _fmt(q.get("key_fact")),
          _fmt(q.get("answer_f1")), _fmt(q.get("top_passage_f1")),
          "yes" if q["abstained"] else "no", "abstain" if q["expect_no_answer"] else "answer",
          _fmt(q.get("evidence")), _fmt(q.get("latency_ms"), "_ms")] for q in report["questions"]],
        markdown=True), ""]
    problems = misses(report)
    lines += ["## Problems", ""] + ([f"- {p}" for p in problems] or ["None."]) + [""]
    if report.get("comparison_text"):
        lines += ["## Change against the earlier report", "", "```", report["comparison_text"], "```", ""]
    return "\n".join(lines)


def write_chart(report: dict[str, Any], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = report["k"]
    keys = ["hit@1", f"hit@{k}", f"recall@{k}", "mrr@10", "ndcg@10", "citation_precision", "citation_recall", "abstain_accuracy"]
    systems = _systems(report)
    keys = [key for key in keys if any(m.get(key) is not None for _, m in systems)]
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(keys) + 2), 4.5))
    width = 0.8 / max(1, len(systems))
    colors = ["#1f6feb", "#9e9e9e", "#f0a030", "#57a773"]
    for i, (name, m) in enumerate(systems):
        xs = [j + (i - (len(systems) - 1) / 2) * width for j in range(len(keys))]
        vals = [m.get(key) or 0.0 for key in keys]
        bars = ax.bar(xs, vals, width, label=name, color=colors[i % len(colors)])
        for b, key in zip(bars, keys):
            v = m.get(key)
            ax.annotate("n/a" if v is None else f"{v:.2f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                        ha="center", va="bottom", fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels(keys, rotation=20, ha="right")
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("score")
    name = Path(report.get("questions_file") or "questions").name
    ax.set_title(f"{name}: {report['n']} questions, k = {k}")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write report.md, report.json and chart.png into ``out_dir`` (created)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "report.md", "json": out / "report.json", "chart": out / "chart.png"}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["md"].write_text(to_markdown(report), encoding="utf-8")
    write_chart(report, paths["chart"])
    return paths


# ============================================================================ comparing

_LOWER_IS_BETTER = ("latency", "false_")


def compare_metrics(report: dict[str, Any], earlier: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per metric: before, after, change (after - before) and whether it got better."""
    now, before = report.get("metrics", {}), earlier.get("metrics", {})
    keys = [key for key in metric_keys(report["k"]) if key in now or key in before]
    keys += [key for key in before if key not in keys and not key.startswith("n_") and key in now]
    out = {}
    for key in keys:
        a, b = before.get(key), now.get(key)
        change = None if a is None or b is None else b - a
        better = None
        if change:
            better = (change < 0) if key.startswith(_LOWER_IS_BETTER) else (change > 0)
        out[key] = {"before": a, "after": b, "change": None if change is None else round(change, 4), "better": better}
    return out


def compare(report: dict[str, Any], earlier: dict[str, Any]) -> str:
    """Each metric's change against an earlier report, then the questions that flipped."""
    k = report["k"]
    lines = []
    if earlier.get("k") != k:
        lines.append(f"note: the earlier report used k = {earlier.get('k')}, this one k = {k}")
    if earlier.get("n") != report["n"]:
        lines.append(f"note: the earlier report had {earlier.get('n')} questions, this one {report['n']}")
    body = []
    for key, c in compare_metrics(report, earlier).items():
        if c["change"] is None:
            delta, verdict = "", "" if c["before"] == c["after"] else "(new)" if c["before"] is None else "(gone)"
        else:
            fmt = "{:+.1f}" if key.endswith("_ms") else "{:+.3f}"
            delta = fmt.format(c["change"]) if c["change"] else "0"
            verdict = "better" if c["better"] else "worse" if c["better"] is False else ""
        body.append([key, _fmt(c["before"], key), _fmt(c["after"], key), delta, verdict])
    lines.append(_table(["metric", "before", "after", "change", ""], body, False))
    old = {q["id"]: q for q in earlier.get("questions", [])}
    flips = []
    for q in report["questions"]:
        o = old.get(q["id"])
        if not o:
            continue
        for key, label in ((f"hit@{k}", f"hit@{k}"), ("hit@1", "hit@1"), ("abstain_correct", "abstention")):
            a, b = o.get(key), q.get(key)
            if a is None or b is None or bool(a) == bool(b):
                continue
            flips.append(f"  {q['id']}: {label} {'gained' if b else 'lost'}")
    if flips:
        lines += ["", "questions that changed:"] + flips
    return "\n".join(lines)


# ============================================================================ command line


def _progress_bar(enabled: bool):
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=0, desc="evaluating", unit=" q", leave=False, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    progress.stage = lambda name: bar.set_description(name)  # type: ignore[attr-defined]
    return progress, bar.close


def run_cli(args: Any, settings: Settings) -> int:
    """`rag eval QUESTIONS [--k 5] [--json] [--out DIR] [--compare REPORT.json] [--baseline ...]`"""
    earlier = None
    if getattr(args, "compare", None):
        try:
            earlier = json.loads(Path(args.compare).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RagError(f"no earlier report at {args.compare}", "Pass the report.json written by `rag eval --out DIR`.") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise RagError(f"cannot read the earlier report {args.compare}: {exc}", "Pass the report.json written by `rag eval --out DIR`.") from None
        if not isinstance(earlier, dict) or "metrics" not in earlier:
            raise RagError(f"{args.compare} is not a `rag eval` report", "Pass the report.json written by `rag eval --out DIR`.")
    k = getattr(args, "k", None) or 5
    if k < 1:
        raise QuestionSetError(f"--k must be at least 1, got {k}")
    baseline = getattr(args, "baseline", None)
    names = ("naive", "bm25") if baseline == "all" else ((baseline,) if baseline else ())
    progress, close = _progress_bar(sys.stderr.isatty())
    try:
        report = evaluate(args.questions, settings, k=k, progress=progress, baselines=names,
                          transcripts=getattr(args, "transcripts", None), on_stage=getattr(progress, "stage", None))
    finally:
        close()
    comparison = None
    if earlier is not None:
        comparison = compare(report, earlier)
        report["comparison"] = compare_metrics(report, earlier)
        report["comparison_text"] = comparison
    if getattr(args, "out", None):
        paths = write_outputs(report, args.out)
        if not args.json:
            print(f"wrote {paths['md']}, {paths['json']} and {paths['chart']}", file=sys.stderr)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        if comparison:
            print(safe_text(comparison), file=sys.stderr)
        return 0
    # question sets and answers are others' text: printed with control characters escaped
    print(safe_text(f"{report['n']} questions from {args.questions}, k = {k}, store {settings.describe_store()}\n"))
    print(safe_text(summary_table(report)))
    print("\nby style:")
    print(safe_text(style_table(report)))
    problems = misses(report)
    if problems:
        print(f"\n{len(problems)} question(s) with problems:")
        for p in problems:
            print(f"  - {safe(p)}")
    if comparison:
        print("\nchange against " + safe(args.compare) + ":")
        print(safe_text(comparison))
    return 0
