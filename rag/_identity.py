"""Speaker identity across labels: link a speaker tagged only by initials or one name (``AS:``,
``Amar:``) to the full name the transcript gives elsewhere ("Amar Shah").

Pure functions, no I/O; run by the parser once turns and acts are known. The signals are
generic: capitalisation, the initials of a name's words, and whether a capitalised word could be
capitalised only because it starts a sentence. No list of names or of words fitted to any data.

Where a name is looked for, in two tiers:
1. what frames the interview: the title (front matter, a Markdown heading, or the file name),
   the introduction (text before the first speaker tag, or turns whose act is "introduction"),
   and the front matter's speaker descriptions;
2. only when the first tier has no candidate: what is said in the turns (reader comments
   excluded).
A name found in the first tier wins over names in the second ("a conversation with Amar Shah"
outweighs a passing "Adam Smith"). Two different names that fit the same tag in one tier are
ambiguous: the speaker is left as it was. So is a tag whose name another speaker already has.

When linked, ``Speaker.name`` becomes the full name, ``Speaker.tag`` keeps the label, and
``Speaker.names`` lists the forms the person goes by: the full name, the first name and the
surname when the transcript uses them alone ("In my conversation with Amar"), and the tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._records import Speaker, Transcript
from ._text import STOPWORDS, fold

# Lower-case name particles ("Ludwig van Beethoven") and English honorifics ("Dr Amar Shah"):
# closed classes of the language, not fitted to any transcript.
_PARTICLES = frozenset("van von de der den da di du del della la le bin ibn al el".split())
_HONORIFICS = frozenset("mr mrs ms miss mx dr prof professor sir dame lord lady rev hon rt".split())
_TOKEN = re.compile(r"[^\W\d_][\w'’\-]*")
_OPENERS = frozenset(" \t*_#>\"“'‘([")  # may stand between a sentence's end and its first word
_ENDERS = frozenset("!?:;…\n\r—–")  # end a sentence (and "." unless after an honorific)
_MAX_WORDS = 4  # a full name has two to four words ("Jane Doe", "Ludwig van Beethoven")


@dataclass(frozen=True)
class _Word:
    text: str  # as written, possessive removed ("Shah's" -> "Shah")
    initial: bool  # first word of a sentence: its capital says nothing about it being a name


def link_speakers(transcript: Transcript) -> dict[str, str]:
    """Give speakers known only by a tag the full name the transcript gives elsewhere.

    Updates ``transcript.speakers`` in place; returns {tag: full name} for the speakers linked."""
    speakers = transcript.speakers
    open_tags = [k for k, s in speakers.items() if _unnamed(s) and (_initials_tag(s.tag) or _single_name(s.tag))]
    if not open_tags:
        return {}
    framing, body = _sources(transcript)
    framing_runs = [r for text in framing for r in name_runs(text)]
    body_runs = [r for text in body for r in name_runs(text)]
    ordinary = {w for w in _TOKEN.findall(transcript.text) if w.islower()}
    capitalised = {fold(w.text) for r in framing_runs + body_runs for w in r}
    lower_title = _lowercase_title(transcript.title)
    # names other speakers have: their tag is the name ("Ines Duarte:"), or an alias ("The Chair
    # (Hon. Anthony Rota):")
    named = {_bare(s.name) for k, s in speakers.items() if k not in open_tags}
    found: dict[str, str] = {}
    for key in open_tags:
        tag = speakers[key].tag
        taken = named | {_bare(a) for k, s in speakers.items() if k != key for a in s.aliases}
        name = None
        for tier, runs in ((0, framing_runs), (1, body_runs)):
            cands = [c for r in runs for c in candidates(tag, r, ordinary)]
            if tier == 0 and lower_title:
                cands += _title_candidates(tag, lower_title, capitalised)
            cands = [c for c in cands if _bare(" ".join(c)) not in taken]
            if cands:
                name = _choose(cands)
                break
        if name:
            found[key] = name
    # two tags that would get the same name: which is which is not clear; leave both
    counts: dict[str, int] = {}
    for name in found.values():
        counts[fold(name)] = counts.get(fold(name), 0) + 1
    found = {k: n for k, n in found.items() if counts[fold(n)] == 1}
    singles = {fold(r[0].text) for r in framing_runs + body_runs if len(r) == 1}
    for key, name in found.items():
        sp = speakers[key]
        parts = name.split()
        # the first name or surname alone, when the transcript uses it and no other linked
        # speaker shares it
        shared = {fold(w) for k, n in found.items() if k != key for w in n.split()}
        short = [w for w in (parts[0], parts[-1]) if fold(w) in singles and fold(w) not in shared]
        names = [name, *short, sp.tag]
        sp.names = [n for i, n in enumerate(names) if fold(n) not in {fold(m) for m in names[:i]}]
        sp.name = name
    return found


def _bare(name: str) -> str:
    """A name to compare: folded, honorifics and punctuation gone ("Hon. Anthony Rota" ->
    "anthony rota")."""
    return " ".join(w for w in _TOKEN.findall(fold(name)) if w.strip(".") not in _HONORIFICS)


def _unnamed(sp: Speaker) -> bool:
    """No real name given: the display name is just the tag (as the parser sets it, or as front
    matter repeats it: ``PP: {name: PP}``)."""
    return fold(sp.name.strip()) == fold(sp.tag.strip())


def _initials_tag(tag: str) -> str:
    """'AS', 'A.S.', 'J. D. S.' -> the initials; '' for anything else (one letter is no tag)."""
    letters = re.sub(r"[.\s]", "", tag)
    return letters if 2 <= len(letters) <= _MAX_WORDS and letters.isalpha() and letters.isupper() else ""


def _single_name(tag: str) -> bool:
    """A one-word tag that could be a first name or surname: 'Amar', 'Shah' (not 'Q', 'AS')."""
    return bool(re.fullmatch(r"[^\W\d_][\w'’\-]+", tag.strip())) and _name_word(tag.strip())


def _name_word(w: str) -> bool:
    """Capitalised with lower-case letters after ('Amar', 'McDonald'; not 'NHS', 'the', 'In')."""
    return (w[:1].isupper() and any(c.islower() for c in w[1:]) and not re.search(r"['’][a-z]", w)
            and fold(w) not in STOPWORDS and fold(w) not in _HONORIFICS)  # not "I’m", "We’ve"


def _sources(t: Transcript) -> tuple[list[str], list[str]]:
    """(framing texts, body texts): see the module docstring."""
    framing = [t.title] + [s.description for s in t.speakers.values() if s.description]
    body = []
    tagged = False
    for turn in t.turns:
        if turn.act == "comment":
            continue
        tagged = tagged or turn.speaker is not None
        if turn.act == "introduction" or (turn.speaker is None and not tagged):
            framing.append(turn.text)
        else:
            body.append(turn.text)
    return framing, body


def name_runs(text: str) -> list[list[_Word]]:
    """Runs of capitalised words that may be names, in order: "In my conversation with Amar
    Shah about Dr. Jane van Dam" -> [Amar, Shah], [Jane, van, Dam]. Honorifics are dropped,
    lower-case particles kept inside a run; a run ends at punctuation or a line break."""
    runs: list[list[_Word]] = []
    run: list[_Word] = []
    prev_end = -1
    prev_honorific = False
    for m in _TOKEN.finditer(text):
        w = re.sub(r"['’]s?$", "", m.group())
        gap = text[prev_end : m.start()] if prev_end >= 0 else ""
        joined = prev_end >= 0 and (re.fullmatch(r"[ \t]+", gap) is not None
                                    or (prev_honorific and re.fullmatch(r"\.[ \t]+", gap) is not None))
        if not joined and run:
            runs.append(run)
            run = []
        prev_end, prev_honorific = m.end(), fold(w) in _HONORIFICS
        if prev_honorific:
            if run:  # "Jane Doe Dr" is not a name; an honorific starts one
                runs.append(run)
                run = []
            continue
        if w and _name_word(w):
            initial = not run and _starts_sentence(text, m.start())
            run.append(_Word(w, initial))
        elif run and w in _PARTICLES and joined:
            run.append(_Word(w, False))
        elif run:
            runs.append(run)
            run = []
    if run:
        runs.append(run)
    out = []
    for r in runs:
        while r and r[-1].text in _PARTICLES:  # "... Jane van" ends on a particle
            r = r[:-1]
        if r:
            out.append(r)
    return out


def _starts_sentence(text: str, at: int) -> bool:
    """Whether the word at ``at`` is the first of a sentence, a line or a quote (its capital is
    no sign of a name). "Dr. Amar" does not start a sentence."""
    i = at - 1
    while i >= 0 and text[i] in _OPENERS:
        i -= 1
    if i < 0 or text[i] in _ENDERS:
        return True
    if text[i] == ".":
        m = re.search(r"([^\W\d_]+)$", text[max(0, i - 12) : i])
        return not (m and fold(m.group(1)) in _HONORIFICS)
    return False


def candidates(tag: str, run: list[_Word], ordinary: set[str]) -> list[tuple[str, ...]]:
    """Full names in one run that fit ``tag``, as word tuples.

    Initials ('AS'): a suffix of the run whose words' initials spell the tag (a name ends its
    run; what comes before is often a title or a sentence's first word: "Director Amar Shah").
    One name ('Amar', 'Shah'): the run from the tag word on ("Amar Shah"), or the run up to the
    tag word at its end ("Jane Doe" for 'Doe'), less a leading word capitalised only because it
    starts a sentence or written in lower case elsewhere ("Yesterday Jane Doe")."""
    words = [w.text for w in run]
    out: list[tuple[str, ...]] = []
    initials = _initials_tag(tag)
    if initials:
        for i in range(len(words)):
            cand = words[i:]
            if cand[0] in _PARTICLES or len([w for w in cand if w not in _PARTICLES]) > _MAX_WORDS:
                continue
            if initials.casefold() in _spellings(cand):
                out.append(tuple(cand))
                break  # the longest suffix that fits
        return out
    t = fold(tag.strip())
    folded = [fold(w) for w in words]
    for i, w in enumerate(folded):
        if w != t:
            continue
        after = words[i : i + _MAX_WORDS]
        if len(after) >= 2 and i + len(after) == len(words):
            out.append(tuple(after))
        elif i == len(words) - 1 and i >= 1:
            start = max(0, i + 1 - _MAX_WORDS)
            while start < i and (words[start] in _PARTICLES or fold(words[start]) in ordinary
                                 or (start == 0 and run[0].initial)):
                start += 1
            if start < i:
                out.append(tuple(words[start : i + 1]))
    return out


def _spellings(words: list[str]) -> set[str]:
    """The initials a name may be written with: particles counted or not, a hyphenated word as
    one letter or one per part ("Jane Smith-Jones": js, jsj)."""
    options: set[str] = {""}
    for w in words:
        letters = {w[0]}
        parts = [p for p in w.split("-") if p]
        if len(parts) > 1:
            letters.add("".join(p[0] for p in parts))
        if w in _PARTICLES:
            letters.add("")
        options = {o + x for o in options for x in letters}
    return {o.casefold() for o in options}


def _lowercase_title(title: str) -> list[str]:
    """The words of a title that lost its capitals (one made from a file name,
    "nhs impact amar shah interview"), else []."""
    toks = _TOKEN.findall(title)
    return toks if toks and all(w.islower() for w in toks) else []


def _title_candidates(tag: str, words: list[str], capitalised: set[str]) -> list[tuple[str, ...]]:
    """Names in a title without capitals: word sequences that fit the tag, confirmed by the
    transcript writing one of their words (other than the tag) capitalised as a name."""
    initials = _initials_tag(tag)
    t = fold(tag.strip())
    out: list[tuple[str, ...]] = []
    for n in range(2, _MAX_WORDS + 1):
        for i in range(len(words) - n + 1):
            seq = words[i : i + n]
            if any(w in STOPWORDS or w in _PARTICLES or w in _HONORIFICS for w in (seq[0], seq[-1])):
                continue
            if initials:
                fits = initials.casefold() in _spellings(seq)
            else:
                fits = t in (seq[0], seq[-1]) and n == 2
            if fits and any(fold(w) in capitalised and fold(w) != t for w in seq):
                out.append(tuple(w if w in _PARTICLES else w[0].upper() + w[1:] for w in seq))
    return out


def _choose(cands: list[tuple[str, ...]]) -> str | None:
    """The one name the candidates agree on, or None when two different names fit. A name and a
    longer one containing it ("Jane Doe", "Jane Doe Smith") are one person: the more often
    written wins, the shorter on a tie."""
    counts: dict[tuple[str, ...], int] = {}
    shown: dict[tuple[str, ...], tuple[str, ...]] = {}
    for c in cands:
        key = tuple(fold(w) for w in c)
        counts[key] = counts.get(key, 0) + 1
        shown.setdefault(key, c)
    keys = list(counts)
    for a in keys:
        for b in keys:
            if a != b and not (_contains(a, b) or _contains(b, a)):
                return None
    best = max(keys, key=lambda k: (counts[k], -len(k)))
    return " ".join(shown[best])


def _contains(long: tuple[str, ...], short: tuple[str, ...]) -> bool:
    return any(long[i : i + len(short)] == short for i in range(len(long) - len(short) + 1))
