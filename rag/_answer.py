"""Extractive, grounded answers: the sentences that best answer the question, quoted verbatim,
attributed to their speaker and cited with [n]; or an honest abstention."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ._records import Citation, Passage, Retrieved, Speaker
from ._text import content_words, fold, sentence_spans

REFUSAL = "I couldn't find this in the transcripts."


@dataclass
class Sentence:
    passage_rank: int  # 0-based rank of its passage among the retrieved
    start: int  # offsets into passage.text
    end: int
    text: str
    score: float = 0.0
    cosine: float = 0.0
    overlap: float = 0.0
    field: str = "text"  # "text": the answer; "question": the question that prompted it
    position: int = 0  # its place among the quotable sentences of that field
    carries: bool = False  # holds the kind of thing the question asks for (a year, an amount...)


FIELDS = ("text", "question")


def passage_sentences(p: Passage, field: str = "text") -> list[tuple[int, int]]:
    """Quotable sentences of a passage's answer, or of its question (only the question's own
    statements, "This reminded me of...", not what it asks: that is no answer)."""
    text = getattr(p, field)
    spans = [(a, b) for a, b in sentence_spans(text) if len(text[a:b].split()) >= 3]
    if field == "question":
        spans = [(a, b) for a, b in spans if not text[a:b].rstrip("\"'”’) ").endswith("?")]
    return spans


def lexical_overlap(q_terms: set[str], text: str, idf: dict[str, float] | None = None) -> float:
    """Share of the question's content words (idf-weighted) that the text contains."""
    if not q_terms:
        return 0.0
    t_terms = set(_terms(text))
    w = (lambda t: idf.get(t, 1.0)) if idf else (lambda t: 1.0)
    total = sum(w(t) for t in q_terms)
    return sum(w(t) for t in q_terms if t in t_terms) / total if total else 0.0


def _terms(text: str) -> list[str]:
    # crude suffix folding so "learn"/"learning"/"learned" meet without a stemmer dependency here
    return [_SUFFIX.sub("", w) if len(w) > 4 else w for w in content_words(fold(text))]


_SUFFIX = re.compile(r"(ing|ed|es|s)$")


def question_terms(question: str) -> set[str]:
    return set(_terms(question))


# Does a sentence carry what the question asks for? Generic shapes, no word lists of any data set.
_YEAR = r"\b(1[6-9]\d\d|20\d\d)s?\b"
# "may" is a month only as "May", and not as in "May I ask": "we may have learned" holds no date
_MONTH = (r"\b(jan(uary)?|feb(ruary)?|march|april|june|july|aug(ust)?|sep(t(ember)?)?|oct(ober)?|nov(ember)?|dec(ember)?)\b|"
          r"(?-i:\bMay\b)(?!\s+(?:I|we|you|he|she|they|it|be|have|not|well|also)\b)")
_NUMBER = r"\b\d[\d,.]*\b|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundreds?|thousands?|millions?|billions?|dozens?|half|percent)\b"
_MONEY = r"[$£€¥]\s?\d|\b\d[\d,.]*\s?(k|m|bn|million|billion|thousand)?\s?(dollars|pounds|euros|cents|pence|usd|gbp|eur)\b|\b(million|billion)\b"
_NAME = r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z'’\-]+(\s+(?:[A-Z]\.\s+)?[A-Z][a-z'’\-]+)+\b"
_ORG = r"\b[A-Z]{2,6}s?\b|\b[A-Z][\w&'’\-]*(\s+[A-Z][\w&'’\-]*)*\s+(Inc|Ltd|Corp|Corporation|Company|Bank|Group|Agency|Foundation|Institute|University|Council|Department|Ministry|Trust|Association|Board)\b"
_REASON = r"\b(because|since|so that|in order to|the reason|due to|as a result|which is why|that's why|therefore)\b"
CARRIES = {
    "date": re.compile(f"{_YEAR}|{_MONTH}|\\b(yesterday|last (week|month|year)|next (week|month|year)|ago)\\b", re.I),
    "number": re.compile(_NUMBER, re.I),
    "amount": re.compile(_MONEY, re.I),
    "person": re.compile(_NAME),
    "organisation": re.compile(_ORG),
    "place": re.compile(_NAME),
    "reason": re.compile(_REASON, re.I),
}


def carries(text: str, answer_type: str) -> bool:
    """Does ``text`` hold something of the expected answer type (a year, an amount, a name...)?"""
    pattern = CARRIES.get(answer_type)
    return bool(pattern and pattern.search(text))


def sentence_candidates(
    question: str,
    q_vec: np.ndarray,
    retrieved: list[Retrieved],
    sentence_vectors,  # callable: list[(Passage, field)] -> list[np.ndarray (n_sent x dim)]
    *,
    max_passages: int,
    idf: dict[str, float] | None = None,
    answer_type: str = "other",
) -> list[Sentence]:
    """Every quotable sentence of the top passages (their answers, and the asker's own statements
    in their questions), in passage and document order, with what scoring needs: its cosine with
    the question, its share of the question's words, whether it carries the expected answer type."""
    top = retrieved[:max_passages]
    if not top:
        return []
    q_terms = question_terms(question)
    cands: list[Sentence] = []
    seen_questions: set[str] = set()
    # one call for both fields: the sentences are embedded together, in as few batches as can be
    vecs = iter(sentence_vectors([(r.passage, field) for field in FIELDS for r in top]))
    for field in FIELDS:
        for rank, (r, mat) in enumerate(zip(top, vecs)):
            text = getattr(r.passage, field)
            if field == "question":
                if text in seen_questions:  # parts of one answer share their question
                    continue
                seen_questions.add(text)
            spans = passage_sentences(r.passage, field)
            if not spans:
                continue
            cos = mat @ q_vec if len(mat) else np.zeros(0)
            for n, ((a, b), c) in enumerate(zip(spans, cos)):
                sent = text[a:b]
                cands.append(Sentence(rank, a, b, sent, 0.0, float(c), lexical_overlap(q_terms, sent, idf), field,
                                      position=n, carries=carries(sent, answer_type)))
    return cands


def select_sentences(
    question: str,
    q_vec: np.ndarray,
    retrieved: list[Retrieved],
    sentence_vectors,
    *,
    cfg=None,  # AnswerSettings (rag._settings); its defaults when None
    idf: dict[str, float] | None = None,
    answer_type: str = "other",
    named=None,  # callable: (Passage, field) -> bool, spoken by someone the question names
    exclude=None,  # callable: (Passage, field) -> bool, words not to quote at all
    parts: Sequence[str] = (),  # what a question asking several things asks (QueryPlan.parts)
) -> list[Sentence]:
    """The sentences that answer, across the top passages, as short contiguous spans within a
    word budget: the best-scoring sentences that clear a bar relative to the best, each with the
    sentence after it when that one also bears on the question (the explanation that follows a
    claim), and the one before when it opens by pointing back ("That was ...")."""
    if cfg is None:
        from ._settings import AnswerSettings

        cfg = AnswerSettings()
    # "Summarize the discussion about X" wants the main points of several speakers
    n_passages = cfg.summary_passages if answer_type == "summary" else cfg.max_passages
    cands = sentence_candidates(question, q_vec, retrieved, sentence_vectors, max_passages=n_passages,
                                idf=idf, answer_type=answer_type)
    top = retrieved[:n_passages]
    if exclude is not None:
        cands = [c for c in cands if not exclude(top[c.passage_rank].passage, c.field)]
    if not cands:
        return []
    if named is not None:
        # "What did X say?": X's words answer it, whether X answered or asked; the asker's words are
        # then quoted as a claim without the penalty they get as mere context
        theirs = [c for c in cands if named(top[c.passage_rank].passage, c.field)]
        cands = theirs or cands
    asked = [bool(named and named(r.passage, "question")) for r in top]
    for c in cands:
        relevance = cfg.w_cosine * c.cosine + cfg.w_overlap * c.overlap
        c.score = (relevance + cfg.w_type * (c.carries and relevance >= cfg.type_gate)
                   - cfg.w_rank * c.passage_rank - cfg.w_position * min(c.position, 10)
                   - (cfg.question_penalty if c.field == "question" and not asked[c.passage_rank] else 0.0))
    at = {(c.passage_rank, c.field, c.position): c for c in cands}
    order = sorted(cands, key=lambda c: -c.score)
    best = order[0].score
    chosen: list[Sentence] = []
    taken: set[int] = set()
    per_passage: dict[tuple[int, str], int] = {}
    used = 0

    said: set[str] = set()  # content words already quoted

    def take(c: Sentence) -> bool:
        nonlocal used
        n = len(c.text.split())
        if id(c) in taken or (chosen and used + n > cfg.budget_words):
            return False
        words_of = set(_terms(c.text))
        if chosen and words_of and len(words_of & said) / len(words_of) > cfg.max_repeat:
            return False  # says again what is already quoted
        chosen.append(c)
        taken.add(id(c))
        said.update(words_of)
        used += n
        return True

    for c in order:
        if chosen and (c.score < best - cfg.relative_bar * abs(best) or used >= cfg.budget_words):
            break
        key = (c.passage_rank, c.field)
        if id(c) in taken or per_passage.get(key, 0) >= cfg.per_passage:
            continue
        if not take(c):
            continue
        per_passage[key] = per_passage.get(key, 0) + 1
        after = at.get((c.passage_rank, c.field, c.position + 1))
        if after is not None and cfg.follow_bar > 0 and after.score >= best - cfg.follow_bar * abs(best):
            take(after)
        before = at.get((c.passage_rank, c.field, c.position - 1))
        if before is not None and _ANAPHORA.match(c.text):
            take(before)
    _answer_parts(parts, cands, chosen, taken, used, idf, cfg)
    return chosen


def _answer_parts(parts: Sequence[str], cands: list[Sentence], chosen: list[Sentence], taken: set[int], used: int,
                  idf: dict[str, float] | None, cfg) -> None:
    """Each part of a question asking several things gets a sentence: a part no chosen sentence
    answers (``cfg.part_covered`` of its words) gets its best remaining one, in the extra room of
    ``cfg.part_words`` words."""
    for part in parts:
        terms = question_terms(part)
        if not terms or cfg.part_words <= 0:
            continue
        if any(lexical_overlap(terms, c.text, idf) >= cfg.part_covered for c in chosen):
            continue
        scored = [(lexical_overlap(terms, c.text, idf), c.score, c) for c in cands if id(c) not in taken]
        if not scored:
            continue
        overlap, _, best = max(scored, key=lambda t: (t[0], t[1]))
        n = len(best.text.split())
        if overlap < cfg.part_covered or used + n > cfg.budget_words + cfg.part_words:
            continue
        chosen.append(best)
        taken.add(id(best))
        used += n


_ANAPHORA = re.compile(r"^(that|this|these|those|it|its|they|them|their|there|he|she|his|her|such|so|and|but|also)\b", re.I)


def short_name(name: str) -> str:
    """The surname, for a second mention: "Julie Morgan AM" -> "Morgan" (post-nominal
    letters dropped), "The Chair" -> "The Chair"."""
    toks = name.split()
    while len(toks) > 2 and toks[-1].isupper() and len(toks[-1]) <= 4:
        toks.pop()
    if len(toks) == 2 and toks[0].lower() == "the":
        return name
    return toks[-1] if toks else name


SpeakerLookup = Callable[[str, str], "Speaker | None"]  # (transcript, name or tag) -> Speaker


def manifest_speakers(manifest: Mapping[str, Any]) -> SpeakerLookup:
    """The ``speakers`` lookup for compose(), from the store's manifest (transcript id -> info
    with ``.speakers``): a speaker is found by display name or by tag."""
    table: dict[tuple[str, str], Speaker] = {}
    for tid, info in manifest.items():
        for sp in info.speakers:
            table.setdefault((tid, sp.name), sp)
            table.setdefault((tid, sp.tag), sp)
    return lambda transcript, name: table.get((transcript, name))


def named(name: str, sp: Speaker | None) -> str:
    """A person as the answer names them: by name, with the transcript's tag where it tags them
    by something else ("Amar Shah (AS)"), so the reader can find them in the transcript."""
    if name and sp is not None and sp.tag and sp.name == name and sp.tag.casefold() != name.casefold():
        return f"{name} ({sp.tag})"
    return name


_ROLE_PHRASE = {"interviewer": "asks the questions in", "interviewee": "answers the questions in",
                "comment": "commented on"}  # "comment": a reader whose comment follows a transcript


def and_list(items: Sequence[str]) -> str:
    """Items as prose: "a", "a and b", "a, b and c"."""
    return " and ".join(items) if len(items) < 3 else f"{', '.join(items[:-1])} and {items[-1]}"


_ROLE_PLURAL = {"interviewer": "ask the questions in", "interviewee": "answer the questions in"}


def role_holders(role: str, names: Sequence[str], shown: int = 8) -> str:
    """The people with a role, when a question asks who has it and many do ("12 people ask the
    questions in the transcripts searched: A, B, ... and 4 more.")."""
    listed = list(names[:shown]) + ([f"{len(names) - shown} more"] if len(names) > shown else [])
    return f"{len(names)} people {_ROLE_PLURAL.get(role, 'speak in')} the transcripts searched: {and_list(listed)}."


def who_is(people: Sequence[tuple[Speaker, str]]) -> str:
    """Who the named people are, as the transcripts' speaker lists give them: ``people`` is each
    (speaker record, transcript title) pair, e.g. "Amar Shah (AS; National Clinical Director for
    Improvement at NHS England) answers the questions in “NHS IMPACT: in conversation with Amar
    Shah”." One sentence per person, their transcripts grouped by role and description."""
    by_person: dict[str, dict[tuple[str, str, str], list[str]]] = {}
    for sp, title in people:
        key = (sp.tag if sp.tag.casefold() != sp.name.casefold() else "", sp.description, sp.role)
        titles = by_person.setdefault(sp.name, {}).setdefault(key, [])
        if title not in titles:
            titles.append(title)
    lines = []
    for name, groups in by_person.items():
        clauses = []
        for (tag, description, role), titles in groups.items():
            about = "; ".join(x for x in (tag, description) if x)
            shown = and_list([f"“{t}”" for t in titles[:3]] + ([f"{len(titles) - 3} more"] if len(titles) > 3 else []))
            clauses.append((about, f"{_ROLE_PHRASE.get(role, 'speaks in')} {shown}"))
        if len(clauses) == 1:
            about, does = clauses[0]
            lines.append(f"{name}{f' ({about})' if about else ''} {does}.")
        else:
            lines.append(f"{name}: " + "; ".join(f"{f'as {about}, ' if about else ''}{does}" for about, does in clauses) + ".")
    return " ".join(lines)


def cast(speakers: Sequence[Speaker], shown: int = 4) -> str:
    """Who takes part, by role: "PP asks the questions; Amar Shah (AS; National Clinical Director
    ...) answers them." A lone holder of a role is described as the speaker list describes them."""
    def people(group: list[Speaker]) -> str:
        names = []
        for sp in group[:shown]:
            description = re.sub(r"\s*\([^()]*\)", "", sp.description).strip() if len(group) == 1 else ""
            about = "; ".join(x for x in (sp.tag if sp.tag.casefold() != sp.name.casefold() else "", description) if x)
            names.append(f"{sp.name} ({about})" if about else sp.name)
        return and_list(names + ([f"{len(group) - shown} others"] if len(group) > shown else []))

    by_role: dict[str, list[Speaker]] = {}
    for sp in sorted((sp for sp in speakers if sp.turns), key=lambda sp: -sp.turns):
        by_role.setdefault(sp.role, []).append(sp)
    clauses = []
    if by_role.get("interviewer"):
        many = len(by_role["interviewer"]) > 1
        clauses.append(f"{people(by_role['interviewer'])} {'ask' if many else 'asks'} the questions")
    if by_role.get("interviewee"):
        many = len(by_role["interviewee"]) > 1
        verb = "answer" if many else "answers"
        clauses.append(f"{people(by_role['interviewee'])} {verb} {'them' if clauses else 'the questions'}")
    if by_role.get("other") and clauses:
        clauses.append(f"also speaking: {people(by_role['other'])}")
    elif by_role.get("other"):
        clauses.append(f"{people(by_role['other'])} {'speak' if len(by_role['other']) > 1 else 'speaks'}")
    return "; ".join(clauses)


def _sentences_of(text: str, spans: list[tuple[int, int]], max_words: int) -> list[tuple[int, int]]:
    """The first of ``spans`` up to ``max_words`` words (at least one)."""
    out: list[tuple[int, int]] = []
    used = 0
    for a, b in spans:
        n = len(text[a:b].split())
        if out and used + n > max_words:
            break
        out.append((a, b))
        used += n
    return out


def _asked(p: Passage, max_words: int, short: int = 12) -> list[tuple[int, int]]:
    """What the question of a passage asks: its sentences that end with a question mark (the
    last ones, within ``max_words``), or its last sentence when none does. A short question
    leans on what came before it ("How far are we along that journey?"): the sentence before
    it comes too, when the budget allows."""
    spans = [(a, b) for a, b in sentence_spans(p.question) if len(p.question[a:b].split()) >= 2]
    asking = [(a, b) for a, b in spans if p.question[a:b].rstrip("\"'”’) ").endswith("?")] or spans[-1:]
    chosen = sorted(_sentences_of(p.question, asking[::-1], max_words))
    if chosen and sum(len(p.question[a:b].split()) for a, b in chosen) < short:
        before = [(a, b) for a, b in spans if b <= chosen[0][0]][-1:]
        if before and sum(len(p.question[a:b].split()) for a, b in before + chosen) <= max_words:
            chosen = before + chosen
    return chosen


def _quote_citation(n: int, p: Passage, field: str, spans: list[tuple[int, int]], role: str) -> Citation | None:
    """One citation of the given sentences of a passage's answer ("text") or question, or None
    when they are not that speaker's own words (check_attribution)."""
    if not spans:
        return None
    text = getattr(p, field)
    sents = [Sentence(0, a, b, text[a:b], field=field) for a, b in spans]
    to_source = p.question_spans if field == "question" else p.source_spans
    c = Citation(n=n, passage=p, quote=_join_quotes(text, sents),
                 highlights=sorted(h for a, b in _runs(text, sents) for h in to_source(a, b)),
                 speaker=p.question_speaker if field == "question" else p.speaker,
                 role=role, field=field)  # type: ignore[arg-type]
    return c if check_attribution(c) else None


def spread(items: Sequence[Any], n: int) -> list[Any]:
    """``n`` of ``items`` spread evenly from the first to the last (all of them when fewer)."""
    if len(items) <= n:
        return list(items)
    if n == 1:
        return [items[0]]
    return [items[round(i * (len(items) - 1) / (n - 1))] for i in range(n)]


def overview(title: str, speakers: Sequence[Speaker], passages: Sequence[Passage], questions: int,
             lookup: SpeakerLookup, first: int = 1, quote_words: int = 50) -> tuple[str, list[Citation]]:
    """What a transcript is about, from its own parts: who takes part (its speaker list), what its
    introduction says, and the questions put in it (``questions`` of them, spread evenly over the
    transcript), each quoted and cited to whoever said it. ``passages`` are the transcript's, in
    order; citations are numbered from ``first``. Without questions (a talk, a statement), the
    opening sentences of passages spread over it are quoted instead. ``questions`` 0: who takes
    part, and nothing else."""
    lines = [f"“{title}”: {cast(speakers)}." if speakers else f"“{title}”."]
    citations: list[Citation] = []
    if not questions:
        return lines[0], citations
    intro = next((p for p in passages if p.kind == "introduction"), None)
    if intro is not None:
        c = _quote_citation(first, intro, "text", _sentences_of(intro.text, sentence_spans(intro.text), quote_words), intro.role)
        if c is not None:
            citations.append(c)
            lines.append(f"{attribution(intro)}: “{c.quote}” [{c.n}]")
    seen: set[tuple[int, str]] = set()
    asked = []
    for p in passages:
        if p.question.strip() and p.question_speaker and (p.turns[0], p.question_speaker) not in seen:
            seen.add((p.turns[0], p.question_speaker))
            asked.append(p)
    items: list[str] = []
    for p in spread(asked, questions):
        sp = lookup(p.transcript, p.question_speaker)
        c = _quote_citation(first + len(citations), p, "question", _asked(p, quote_words), sp.role if sp else "other")
        if c is not None:
            citations.append(c)
            items.append(f"- {named(p.question_speaker, sp)}: “{c.quote}” [{c.n}]")
    if items:
        shown = f"{len(items)} of the {len(asked)} questions asked, from first to last" if len(asked) > len(items) else "The questions asked"
        lines.append(f"{shown}:\n" + "\n".join(items))
    else:
        said = [p for p in passages if p.kind in ("answer", "statement") and p.text.strip() and p.part <= 1]
        for p in spread(said, questions):
            c = _quote_citation(first + len(citations), p, "text", _sentences_of(p.text, sentence_spans(p.text)[:1], quote_words), p.role)
            if c is not None:
                citations.append(c)
                items.append(f"- {attribution(p, named(p.speaker, lookup(p.transcript, p.speaker)))}: “{c.quote}” [{c.n}]")
        if items:
            lines.append("In order:\n" + "\n".join(items))
    return "\n\n".join(lines), citations


def key_points(title: str, points: Sequence[tuple[Passage, tuple[int, int]]], lookup: SpeakerLookup,
               first: int = 1) -> tuple[str, list[Citation]]:
    """'Key points of “Title”, from first to last:' and one quoted sentence per answer chosen
    (rag._engine.Engine._points), each cited to its speaker; the speaker is named on each line
    unless one person says them all."""
    speakers = {p.speaker for p, _ in points}
    one = next(iter(speakers)) if len(speakers) == 1 else ""
    citations: list[Citation] = []
    items = []
    for p, span in points:
        c = _quote_citation(first + len(citations), p, "text", [span], p.role)
        if c is not None:
            citations.append(c)
            who = "" if one else f"{attribution(p, named(p.speaker, lookup(p.transcript, p.speaker)))}: "
            items.append(f"- {who}“{c.quote}” [{c.n}]")
    if not items:
        return f"“{title}” has no answers to draw key points from.", []
    whose = f" of what {named(one, lookup(points[0][0].transcript, one))} says" if one else ""
    return f"Key points{whose} in “{title}”, from first to last:\n" + "\n".join(items), citations


def record(field: str, infos: Sequence[Any], shown: int = 10) -> str:
    """When the transcripts were made ("date") or where they come from ("source"), as their front
    matter or file header gives it; says so for those that do not."""
    given = [(i.title or i.id, getattr(i, field)) for i in infos if getattr(i, field)]
    missing = [i.title or i.id for i in infos if not getattr(i, field)]
    lines = [f"“{title}”: {value}." for title, value in given[:shown]]
    if len(given) > shown:
        lines.append(f"…and {len(given) - shown} more with a {field}.")
    if missing:
        names = and_list([f"“{t}”" for t in missing[:shown]] + ([f"{len(missing) - shown} more"] if len(missing) > shown else []))
        lines.append(f"{names} {'gives' if len(missing) == 1 else 'give'} no {field}.")
    return "\n".join(lines)


# A speaker saying who they are: "I trained as a clinician", "I'm still a practising clinician",
# "becoming National Clinical Director for Improvement", "in my role as chief executive", "I joined
# the bank in 1998". First person, and what follows names a post (an article, or a capitalised title)
_SELF = re.compile(
    r"\b(?:I\s+(?:am|was|have\s+been|had\s+been)|I[’']m|I[’']ve\s+been)\s+(?:still\s+|now\s+|also\s+|currently\s+|formerly\s+)?"
    r"(?:(?:a|an)\s+(?!(?:bit|little|lot|fan|great\s+deal)\b)\w+|the\s+[A-Z]\w+|[A-Z][a-z]+\s+[A-Z]\w+)|"
    r"\bI\s+(?:trained|qualified|started|began|worked|work|served|serve|joined|practis?ed|practiced)\s+(?:training\s+)?(?:as|at|with)\s+(?:a|an|the|[A-Z])|"
    r"\b(?:I\s+became|becoming|I\s+was\s+appointed|being\s+appointed|I\s+took\s+up)\s+(?:a|an|the\s+)?[A-Z]\w+|"
    r"\bmy\s+(?:new\s+|current\s+|previous\s+|old\s+)?(?:role|job|post|position|title)\s+(?:as|is|was)\b|"
    r"\bin\s+my\s+(?:new\s+|current\s+)?(?:role|job|post|position)\s+as\b|"
    r"\bI\s+(?:started|began)\s+training\s+as\s+(?:a|an|the)\b")


def self_descriptions(passages: Sequence[Passage], name: str, limit: int = 3) -> list[tuple[Passage, tuple[int, int]]]:
    """Sentences in which ``name`` says who they are (their post, training, work), in the order
    they were said: the answer to "Who is X?" when the speaker list does not describe X."""
    out = []
    for p in passages:
        if p.speaker != name or p.kind not in ("answer", "statement"):
            continue
        for a, b in passage_sentences(p):
            if _SELF.search(p.text[a:b]):
                out.append((p, (a, b)))
                if len(out) >= limit:
                    return out
    return out


def in_own_words(name: str, found: Sequence[tuple[Passage, tuple[int, int]]], lookup: SpeakerLookup,
                 first: int = 1) -> tuple[str, list[Citation]]:
    """'Shah says: “I trained as a clinician…” [1] “…” [2]': the sentences of self_descriptions(),
    one citation per passage, each checked to be the speaker's own words."""
    by_passage: dict[str, tuple[Passage, list[tuple[int, int]]]] = {}
    for p, span in found:
        by_passage.setdefault(p.chunk_id, (p, []))[1].append(span)
    quotes, citations = [], []
    for p, spans in by_passage.values():
        c = _quote_citation(first + len(citations), p, "text", sorted(spans), p.role)
        if c is not None:
            citations.append(c)
            quotes.append(f"“{c.quote}” [{c.n}]")
    return (f"{short_name(name)} says: " + " ".join(quotes) if quotes else ""), citations


def attribution(p: Passage, name: str | None = None) -> str:
    """Who says the answer's words, for the prose; ``name`` is the answerer as the answer names
    them (default: the passage's speaker)."""
    name = p.speaker if name is None else name
    if p.kind == "comment":
        return f"A reader, {name}, commented" + (f" ({p.comment_date})" if p.comment_date else "")
    if p.kind == "introduction":
        return "The introduction says"
    if not name:
        return f"The transcript {p.title or p.transcript} says"
    return f"{name} says"


def check_attribution(c: Citation) -> bool:
    """Is the citation's quote the cited speaker's own words? The quoted field must be spoken by
    that speaker (the answer by the passage's speaker, the question by its asker), every
    highlight must lie inside that field's source ranges, and every quoted piece must be text of
    that field. A citation that fails is never emitted: a quote from the question cited to the
    answerer (or the other way round) would put words in someone else's mouth."""
    p = c.passage
    if c.field == "question":
        owner, segments, text = p.question_speaker, p.question_segments, p.question
    elif c.field == "text":
        owner, segments, text = p.speaker, p.segments, p.text
    else:
        return False
    if c.speaker != owner or not c.highlights or not c.quote.strip():
        return False
    ranges: list[list[int]] = []
    for a, b in sorted((s.start, s.end) for s in segments):
        if ranges and a <= ranges[-1][1]:
            ranges[-1][1] = max(ranges[-1][1], b)
        else:
            ranges.append([a, b])
    if not all(any(a <= lo < hi <= b for a, b in ranges) for lo, hi in c.highlights):
        return False
    flat = " ".join(text.split())  # quotes join sentences across paragraph breaks with a space
    return all(" ".join(piece.split()) in flat for piece in c.quote.split(" … "))


def compose(
    retrieved: list[Retrieved], chosen: list[Sentence], speakers: SpeakerLookup | None = None
) -> tuple[str, list[Citation]]:
    """Group the chosen sentences by passage (in rank order) and, within a passage, by whose
    words they are: the answer, then the asker's own statements in the question. Each group is
    one quote of one person, quoted in document order, attributed to that person in the prose and
    cited once with its own [n]. ``speakers`` ((transcript, name) -> Speaker) gives the asker's
    role and the tags people are named with; a group that fails check_attribution is left out."""
    lookup = speakers or (lambda transcript, name: None)
    groups: dict[int, list[Sentence]] = {}
    for s in chosen:
        groups.setdefault(s.passage_rank, []).append(s)
    lines: list[str] = []
    citations: list[Citation] = []
    last_speaker = None
    for rank in sorted(groups):
        p = retrieved[rank].passage
        parts: list[str] = []
        for field in FIELDS:
            spans = p.question_spans if field == "question" else p.source_spans
            who = p.question_speaker if field == "question" else p.speaker
            # each sentence on its own first, so one stray sentence does not sink the others
            sents = sorted(
                (s for s in groups[rank] if s.field == field
                 and check_attribution(Citation(0, p, s.text, spans(s.start, s.end), speaker=who, field=field))),  # type: ignore[arg-type]
                key=lambda s: s.start,
            )
            if not sents:
                continue
            sp = lookup(p.transcript, who) if who else None
            role = p.role if field == "text" else (sp.role if sp is not None else "other")
            c = _quote_citation(len(citations) + 1, p, field, [(s.start, s.end) for s in sents], role)
            if c is None:
                continue
            citations.append(c)
            name = named(who, sp)
            if field == "question" and parts:  # the answer came first: the question is its context
                parts[-1] += ","
                parts.append(f"answering {name or 'the interviewer'}, who said in the question: “{c.quote}” [{c.n}]")
            elif field == "question":
                parts.append(f"{name or 'The interviewer'} said in a question: “{c.quote}” [{c.n}]")
            else:
                said = attribution(p, name)
                if who and who == last_speaker and p.kind == "answer":
                    said = f"{short_name(who)} adds"
                parts.append(f"{said}: “{c.quote}” [{c.n}]")
            last_speaker = who
        if parts:
            lines.append(" ".join(parts))
    if not citations:  # nothing could be quoted with its true speaker
        return REFUSAL, []
    return "\n\n".join(lines), citations


def _runs(text: str, sents: list[Sentence]) -> list[tuple[int, int]]:
    """The sentences (in document order) as runs of adjacent ones: one highlight for a span the
    reader sees as one piece, not one per sentence."""
    runs: list[tuple[int, int]] = []
    for s in sents:
        if runs and not text[runs[-1][1] : s.start].strip():
            runs[-1] = (runs[-1][0], s.end)
        else:
            runs.append((s.start, s.end))
    return runs


def _join_quotes(text: str, sents: list[Sentence]) -> str:
    out = sents[0].text
    for prev, cur in zip(sents, sents[1:]):
        gap = text[prev.end : cur.start]
        out += (" " if not gap.strip() else " … ") + cur.text
    return out


# ---------------------------------------------------------------------------- a premise's values

# Values a question can take for granted: a year, a percentage, an amount of money. Generic
# shapes, as for CARRIES.
_VALUE_SHAPES = {
    "year": re.compile(r"(?<![\d$£€])(1[6-9]\d\d|20\d\d)(?![\d%])"),
    "percent": re.compile(r"(\d+(?:\.\d+)?)\s?(?:%|per ?cent\b)", re.I),
    "money": re.compile(r"([$£€])\s?(\d[\d,]*(?:\.\d+)?)\s?(k|m|bn|thousand|million|billion)?\b", re.I),
}
_SCALE = {"k": "thousand", "m": "million", "bn": "billion"}


def values_in(text: str) -> dict[str, set[str]]:
    """The years, percentages and amounts of money a text states, by kind, in one spelling
    ("20%" and "20 per cent" are "20%"; "$5m" and "$5 million" are "$5 million")."""
    out: dict[str, set[str]] = {}
    for kind, pattern in _VALUE_SHAPES.items():
        for m in pattern.finditer(text):
            if kind == "money":
                scale = (m.group(3) or "").lower()
                value = f"{m.group(1)}{m.group(2).replace(',', '')}" + (f" {_SCALE.get(scale, scale)}" if scale else "")
            else:
                value = m.group(1) + ("%" if kind == "percent" else "")
            out.setdefault(kind, set()).add(value)
    return out


# A question asking for an amount of money or a time that no passage found gives any of: the
# answer says so before the nearest quote, rather than quote it as if it answered. A time may be
# given loosely ("soon", "in the coming weeks"): that counts as one.
ABSENT_TYPES = {"amount": "no amount of money", "date": "no date or time"}
_LOOSE_TIME = re.compile(r"\b(soon|shortly|now|recently|currently|later|earlier|already|immediately|today|tomorrow|"
                         r"(this|coming|next|last|past|few|several) (days?|weeks?|months?|years?|spring|summer|autumn|winter)|"
                         r"in the (near|coming) future|by the end of|at the end of)\b", re.I)


def type_absent(answer_type: str, passages_text: str) -> str:
    """What the question asks for that none of the passages found gives any of ("no amount of
    money", "no date or time"), or "" when they give one or the question asks for something else."""
    what = ABSENT_TYPES.get(answer_type)
    if not what or carries(passages_text, answer_type):
        return ""
    if answer_type == "date" and _LOOSE_TIME.search(passages_text):
        return ""
    return what


def unsupported_values(question: str, passages_text: str, quoted: str) -> list[tuple[str, list[str]]]:
    """Values the question states that none of the retrieved passages states, while the quoted
    answer gives another value of the same kind: [(the question's value, the answer's values)].
    "Why did the budget rise by 20% in 2019?" against passages that say 12% and 2021."""
    asked = values_in(question)
    if not asked:
        return []
    found, given = values_in(passages_text), values_in(quoted)
    out = []
    for kind, values in asked.items():
        for v in sorted(values):
            if v not in found.get(kind, set()) and given.get(kind):
                out.append((v, sorted(given[kind])))
    return out
