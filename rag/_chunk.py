"""Pair answers with their questions and cut answer-level passages that fit the model window.

Pure functions: a Transcript in, Passages out. Token counts come from a callable so that the
caller decides which tokenizer counts (the embedding model's own, in practice).
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

from ._records import Passage, Segment, Transcript, Turn, embed_text, join_segments
from ._text import sentence_spans

CountTokens = Callable[[Sequence[str]], list[int]]
QUESTION_TOKEN_CAP = 96  # at most this much of a long question goes into the embedded text
TAIL_MIN_TOKENS = 32  # a split answer's last part gets at least about a sentence
# A tokenizer may read a very long run of characters as one token (WordPiece: any word over 100
# characters is one [UNK]), so a 2 MB word would "fit" in one passage. Runs of LONG_RUN or more
# non-space characters, and every piece cut from an overlong word, count at least one token per
# CHARS_PER_TOKEN characters. Ordinary text is never affected (words and URLs tokenize to more).
LONG_RUN = 50
CHARS_PER_TOKEN = 4
_LONG_RUN = re.compile(r"\S{%d,}" % LONG_RUN)


def _cost(text: str, tokens: int) -> int:
    """Tokens, but at least one per CHARS_PER_TOKEN characters of each overlong run."""
    floor = sum(-(-(m.end() - m.start()) // CHARS_PER_TOKEN) for m in _LONG_RUN.finditer(text))
    return max(tokens, floor)


def _piece_cost(piece: str, tokens: int) -> int:
    return max(tokens, -(-len(piece) // CHARS_PER_TOKEN))


def chunk_transcript(t: Transcript, count_tokens: CountTokens, max_tokens: int = 256) -> list[Passage]:
    """Answer-level passages of a transcript. ``max_tokens`` is the embedder's window
    (special tokens included)."""
    turns = t.turns
    passages: list[Passage] = []
    question_of = _pair_questions(turns)
    answered_questions = {q.index for q in question_of.values() if q is not None}
    for turn in turns:
        if turn.act == "procedural" or turn.act == "question" and turn.index in answered_questions:
            continue
        if turn.act == "question" and turn.speaker in t.speakers and t.speakers[turn.speaker].role == "interviewee":
            continue  # a witness asking back ("Do you mean...?") before answering: not content
        q = question_of.get(turn.index)
        kind = {"answer": "answer", "introduction": "introduction", "comment": "comment"}.get(turn.act, "statement")
        if turn.act == "answer" and q is None:
            kind = "statement"
        speaker = t.speakers.get(turn.speaker) if turn.speaker else None
        if turn.act == "comment":
            name, role = turn.comment_author or "Reader", "other"
        elif speaker is not None:
            name, role = speaker.name, speaker.role
        else:
            name, role = "", "other"
        q_text = q.text if q is not None else ""
        q_speaker = (t.speakers[q.speaker].name if q is not None and q.speaker in t.speakers else "")
        adjacent = q is not None and all(
            turns[i].act == "procedural" for i in range(q.index + 1, turn.index)
        )
        start_char = q.tag_start if (q is not None and adjacent) else turn.tag_start
        first_turn = q.index if q is not None else turn.index
        q_embed = _trim_question(q_text, count_tokens) if q_text else ""
        window = max_tokens - 2  # [CLS] and [SEP]
        prefix = embed_text(q_speaker, q_embed, name, "")  # everything embedded besides the answer
        budget = window - (count_tokens([prefix])[0] if prefix.strip() else 0)
        parts = _fit(turn.segments, count_tokens, max(budget, 1), lambda body: embed_text(q_speaker, q_embed, name, body), window)
        base_id = f"{t.id}#t{first_turn}" + (f"-{turn.index}" if first_turn != turn.index else "")
        for n, segs in enumerate(parts, 1):
            part = n if len(parts) > 1 else 0
            p_start = start_char if n == 1 else segs[0].start
            p_end = segs[-1].end if n < len(parts) else turn.end
            passages.append(
                Passage(
                    chunk_id=base_id + (f"/p{part}" if part else ""),
                    transcript=t.id,
                    title=t.title,
                    date=t.date,
                    kind=kind,  # type: ignore[arg-type]
                    speaker=name,
                    role=role,  # type: ignore[arg-type]
                    text=join_segments(segs),
                    segments=segs,
                    turns=(first_turn, turn.index),
                    start_char=p_start,
                    end_char=p_end,
                    question=q_text,
                    question_speaker=q_speaker,
                    part=part,
                    start_time=turn.start_time,
                    end_time=turn.end_time,
                    comment_date=turn.comment_date or "",
                    embed_question=q_embed,
                    question_segments=list(q.segments) if q is not None else [],
                )
            )
    return passages


def _pair_questions(turns: list[Turn]) -> dict[int, Turn | None]:
    """For each answer turn, the question turn that prompted it: the latest question by someone
    else (a witness asking back for clarification does not answer their own question)."""
    out: dict[int, Turn | None] = {}
    questions: list[Turn] = []
    for t in turns:
        if t.act == "question":
            questions.append(t)
        elif t.act == "answer":
            out[t.index] = next((q for q in reversed(questions) if q.speaker != t.speaker), None)
    return out


def _trim_question(question: str, count_tokens: CountTokens) -> str:
    """The end of a long question (where the actual question usually is), within the cap."""
    if _cost(question, count_tokens([question])[0]) <= QUESTION_TOKEN_CAP:
        return question
    spans = sentence_spans(question)
    sents = [question[a:b] for a, b in spans]
    counts = [_cost(x, c) for x, c in zip(sents, count_tokens(sents))]
    kept: list[str] = []
    total = 0
    for s, c in zip(reversed(sents), reversed(counts)):
        if total + c > QUESTION_TOKEN_CAP:
            break
        kept.insert(0, s)
        total += c
    if not kept:  # one huge last sentence: keep as many of its last words as fit
        words = sents[-1].split() if sents else question.split()
        wc = [_cost(w, c) for w, c in zip(words, count_tokens(words))]
        i = len(words)
        while i > 0 and total + wc[i - 1] <= QUESTION_TOKEN_CAP:
            i -= 1
            total += wc[i]
        if i == len(words):  # even the last word is too long: the longest tail of it that fits
            word = words[-1]
            # find the smallest start whose tail fits (a tail longer than this never does)
            lo, hi = max(0, len(word) - QUESTION_TOKEN_CAP * CHARS_PER_TOKEN), len(word) - 1
            while lo < hi:
                mid = (lo + hi) // 2
                if _piece_cost(word[mid:], count_tokens([word[mid:]])[0]) <= QUESTION_TOKEN_CAP:
                    hi = mid
                else:
                    lo = mid + 1
            return word[lo:]
        kept = [" ".join(words[i:])]
    return " ".join(kept)


def _fit(segments: list[Segment], count_tokens: CountTokens, budget: int, embed: Callable[[str], str], window: int) -> list[list[Segment]]:
    """Split into parts within the budget, then check each part's embedded text as the model
    will read it (question included); tighten the budget until every part fits the window."""
    while True:
        parts = _split(segments, count_tokens, budget)
        texts = [embed(join_segments(p)) for p in parts]
        if budget <= 1 or all(c <= window for c in count_tokens(texts)):
            return parts
        budget = max(1, budget * 9 // 10)


def _split(segments: list[Segment], count_tokens: CountTokens, budget: int) -> list[list[Segment]]:
    """Pack paragraphs into parts within ``budget`` tokens; split long paragraphs at sentences
    and overlong sentences at words. WordPiece counts add up over whitespace-separated pieces."""
    pieces: list[tuple[Segment, int]] = []
    counts = [_cost(s.text, c) for s, c in zip(segments, count_tokens([s.text for s in segments]))]
    for seg, c in zip(segments, counts):
        if c <= budget:
            pieces.append((seg, c))
        else:
            pieces.extend(_split_segment(seg, count_tokens, budget))
    parts: list[list[tuple[Segment, int]]] = []
    current: list[tuple[Segment, int]] = []
    used = 0
    for seg, c in pieces:
        if current and used + c > budget:
            parts.append(current)
            current, used = [], 0
        current.append((seg, c))
        used += c
    if current:
        parts.append(current)
    _rebalance(parts, budget)
    return [[_with_sep(p[0][0], "\n")] + [seg for seg, _ in p[1:]] for p in parts]


def _rebalance(parts: list[list[tuple[Segment, int]]], budget: int) -> None:
    """Greedy packing can leave a scrap as the last part ("Thank you." on its own): give it the
    sentences before it until it says something, never over the budget. Parts of a useful
    size are left as they are."""
    floor = min(TAIL_MIN_TOKENS, budget // 4)
    for i in range(len(parts) - 1, 0, -1):
        prev, cur = parts[i - 1], parts[i]
        while len(prev) > 1:
            b, c = sum(n for _, n in cur), prev[-1][1]
            if b >= floor or b + c > budget:
                break
            cur.insert(0, prev.pop())


def _with_sep(seg: Segment, sep: str) -> Segment:
    return Segment(seg.text, seg.start, seg.end, sep=sep)


def _split_segment(seg: Segment, count_tokens: CountTokens, budget: int) -> list[tuple[Segment, int]]:
    if not seg.verbatim:
        return [(seg, min(count_tokens([seg.text])[0], budget))]
    text = seg.text
    sents = [Segment(text[a:b], seg.start + a, sep=" ") for a, b in sentence_spans(text)]
    if sents:
        sents[0] = _with_sep(sents[0], seg.sep)
    out: list[tuple[Segment, int]] = []
    for s, c in zip(sents, count_tokens([s.text for s in sents])):
        c = _cost(s.text, c)
        if c <= budget:
            out.append((s, c))
            continue
        # a sentence longer than the window: cut at word boundaries, explicitly
        words = list(re.finditer(r"\S+", s.text))
        wc = [_cost(w.group(), n) for w, n in zip(words, count_tokens([w.group() for w in words]))]
        pieces: list[tuple[int, int, int]] = []  # (start, end, tokens) within s.text
        for w, n in zip(words, wc):
            if n <= budget:
                pieces.append((w.start(), w.end(), n))
            else:  # one "word" longer than the window (a URL, a blob): cut it by characters
                pieces.extend(_cut_word(w.group(), w.start(), count_tokens, budget))
        a_start = a_end = -1
        used = 0
        for start, end, n in pieces:
            if a_start >= 0 and used + n > budget:
                out.append((Segment(s.text[a_start:a_end], s.start + a_start, sep=" " if out else s.sep), used))
                a_start, used = -1, 0
            if a_start < 0:
                a_start = start
            a_end = end
            used += n
        if a_start >= 0:
            out.append((Segment(s.text[a_start:a_end], s.start + a_start, sep=" " if out else s.sep), used))
    return out


def _cut_word(word: str, offset: int, count_tokens: CountTokens, budget: int) -> list[tuple[int, int, int]]:
    """Character pieces of an overlong word, each within the budget (a piece counts at least
    one token per CHARS_PER_TOKEN characters, so it is never longer than budget times that).

    Each piece is the longest that fits; the search starts from the last piece's length (the
    same, mostly, along a word), so a piece costs a few counts of at most that many characters
    and the whole word time linear in its length."""
    out: list[tuple[int, int, int]] = []
    limit = max(1, budget * CHARS_PER_TOKEN)
    guess = limit
    a = 0
    while a < len(word):
        seen: dict[int, int] = {}

        def fits(b: int) -> bool:
            if b not in seen:
                seen[b] = _piece_cost(word[a:b], count_tokens([word[a:b]])[0])
            return seen[b] <= budget

        top = min(len(word), a + limit)
        g = min(a + guess, top)
        if fits(g):
            lo, hi = g, top  # lo fits; the longest fitting end is in [lo, hi]
            if g < top and not fits(g + 1):
                hi = g
        else:
            lo, hi = a + 1, g - 1  # a single character is taken even if it does not fit
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid - 1
        if lo not in seen:
            fits(lo)
        out.append((offset + a, offset + lo, seen[lo]))
        guess = lo - a
        a = lo
    return out
