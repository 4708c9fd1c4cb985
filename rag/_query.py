"""Query planning: read a question, with the conversation so far and what the corpus knows
about its speakers and words, into a typed ``QueryPlan`` that the later steps (retrieve, select,
decide) act on without reading the question again.

``plan(question, history, corpus, filters, settings) -> QueryPlan`` is a pure function: every
rule here can be tested on a plain string and a ``Corpus`` built from a few records, without a
store or a model. What it resolves:

* follow-ups ("and Uganda?", "why does he think that?") against the earlier question;
* the speakers it names, by name, first name, surname, initials, tag or title ("Amar Shah",
  "Shah", "AS", "the minister"), and the roles and kinds ("the interviewer", "the reader");
* the transcripts it names ("in the interview with Amar Shah", a title, a file name);
* the text to embed (request phrasing stripped), the lexical text (titles of the named speakers
  neutralised), the evidence text (names neutralised), and the expected answer type;
* names the corpus never mentions, and the topic left once speakers are taken out.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ._records import Passage, Speaker
from ._settings import TRANSCRIPT_WORDS
from ._text import STOPWORDS, content_words, fold, words

# Honorifics and titles are not names: "Mr" must not match every "Mr. X".
_HONORIFICS = {
    "mr", "mrs", "ms", "miss", "mx", "dr", "prof", "professor", "hon", "honourable", "honorable",
    "right", "rt", "sir", "dame", "lord", "lady", "am", "mp", "ms", "mla", "msp", "the", "of", "and",
    "de", "la", "le", "van", "von", "der", "jr", "sr", "st", "rev", "cllr", "councillor",
}
# Words that refer to a speaker by role rather than name (generic English).
_ROLE_WORDS = {
    "interviewer": ("role", "interviewer"),
    "interviewers": ("role", "interviewer"),
    "host": ("role", "interviewer"),
    "hosts": ("role", "interviewer"),
    "interviewee": ("role", "interviewee"),
    "interviewees": ("role", "interviewee"),
    "guest": ("role", "interviewee"),
    "guests": ("role", "interviewee"),
    "witness": ("role", "interviewee"),
    "witnesses": ("role", "interviewee"),
    "reader": ("kind", "comment"),
    "readers": ("kind", "comment"),
    "commenter": ("kind", "comment"),
    "comment": ("kind", "comment"),
    "comments": ("kind", "comment"),
    "commented": ("kind", "comment"),
    "introduction": ("kind", "introduction"),
}


# How people phrase a request for content ("summarize the discussion about X", "what did the
# committee say about X") carries no topic: strip it before searching (generic English).
_META = re.compile(
    r"^\s*(please\s+)?(can you\s+|could you\s+)?(summari[sz]e|describe|explain|outline|tell (me|us)( about)?|give (me|us))?\s*"
    r"((what|how) (was|were|is|are|did|does|do) )?(the |an? )?"
    r"((whole |overall |main |general |brief |short |quick )?(discussion|debate|conversation|talk|dialogue|exchange|meeting|committee|group|panel|"
    r"opinions?|views?|positions?|arguments?|points?|thoughts?|ideas?|decisions?|conclusions?|outcome|summary|overview|synopsis|"
    r"gist|rundown)s?\b\s*)+"
    r"((about|on|over|of|regarding|around|concerning|when discussing|towards?|with regard to|in terms of)\s+)?(the\s+)?",
    re.I,
)
_REQUEST = {"said", "say", "says", "saying", "think", "thinks", "thought", "comment", "commented", "comments",
            "talk", "talked", "mention", "mentioned", "respond", "responded", "answer", "answered", "feel", "felt",
            "believe", "believes", "opinion", "view", "views", "who", "person", "someone", "anything", "everything"}
_QUERY_NOISE = {"summarize", "summarise", "discussion", "discuss", "discussed", "debate", "debated", "talk", "talked",
                "meeting", "opinion", "opinions", "view", "views", "mention", "mentioned", "regarding"}


def topic_of(question: str) -> str:
    """The question without request phrasing: "Summarize the discussion about X" -> "X"."""
    m = _META.match(question)
    rest = question[m.end():] if m and m.end() > 0 else question
    return rest if len(rest.split()) >= 1 and rest.strip(" ?.!") else question



@dataclass
class SpeakerEntry:
    name: str
    role: str
    names: set[str]  # folded name tokens (first names, surnames, initials tags)
    titles: set[str]  # folded words of titles/descriptions ("minister", "chair", "finance")
    phrases: list[str]  # folded full names and aliases
    heads: set[str] = field(default_factory=set)  # the titles' head nouns ("minister" of "Minister of Finance")
    title_phrases: set[str] = field(default_factory=set)  # each title's words, joined ("minister finance")
    # a tag in capitals that is also a common word ("AS", "IT"): a name only when written so
    caps: set[str] = field(default_factory=set)




_DETERMINERS = {"the", "our", "your", "this", "that"}


@dataclass
class _Reference:
    start: int  # character range in the question
    end: int
    speaker: str
    score: float  # name words, or title words (+0.5 for a whole title)
    by_name: bool
    words: tuple[str, ...]  # the name or title words it matched




def passage_words(p: Passage) -> set[str]:
    """The words (folded) a passage adds to the corpus's words."""
    return set(words(fold(f"{p.speaker} {p.question_speaker} {p.question} {p.text} {p.title}")))


def corpus_words(passage_words: Iterable[str], speakers: list[Speaker]) -> set[str]:
    """Every word of the corpus: the passages' words, and the speakers' names, tags, descriptions
    and aliases (for "is this name mentioned anywhere?")."""
    out = set(passage_words)
    for sp in speakers:
        out.update(words(fold(f"{sp.name} {sp.tag} {sp.description} {' '.join(sp.aliases)}")))
    out.update([w[:-2] for w in out if w.endswith("'s")])  # "Berwick's" mentions Berwick
    return out


class Corpus:
    """What the planner knows of the corpus: every word it contains, and its speakers."""

    def __init__(self, passages: list[Passage], speakers: list[Speaker]) -> None:
        # every word of the corpus (folded), and the speakers' names and titles, for "is this
        # name mentioned anywhere?"
        # (how many passages hold each word: what the query snapshot keeps, so that adding a
        # transcript counts its own passages' words only)
        self.passage_words: dict[str, int] = {}
        count = self.passage_words
        for p in passages:
            for w in passage_words(p):
                count[w] = count.get(w, 0) + 1
        self.words: set[str] = corpus_words(count, speakers)
        self._init_speakers(_speaker_entries(speakers), speakers)
        texts = [p.text for p in passages]

        def has_word(word: str) -> bool:
            pattern = re.compile(rf"(?<![\w'’-]){re.escape(word)}(?![\w'’-])")
            return any(pattern.search(t) for t in texts)

        self._has_word: Callable[[str], bool] = has_word
        # transcripts by what names them: title, file name, and the people interviewed in them
        self.titles: dict[str, str] = {}
        self.people: dict[str, set[str]] = {}  # speaker name -> transcripts they speak in
        for p in passages:
            if p.transcript not in self.titles:
                self.titles[p.transcript] = p.title
            if p.speaker:
                self.people.setdefault(p.speaker, set()).add(p.transcript)

    @classmethod
    def restored(cls, entries: list[SpeakerEntry], speakers: list[Speaker], *, words: set[str],
                 titles: dict[str, str], people: dict[str, set[str]], has_word: Callable[[str], bool]) -> "Corpus":
        """A Corpus from what ``__init__`` computed, read back (rag/_snapshot.py); ``has_word``:
        is a word written, as spelt, as a whole word in some passage's answer text?"""
        self = cls.__new__(cls)
        self.words, self.titles, self.people, self._has_word = words, titles, people, has_word
        self._init_speakers(entries, speakers)
        return self

    def _init_speakers(self, entries: list[SpeakerEntry], speakers: list[Speaker]) -> None:
        self.speakers = entries
        self._speakers = speakers
        self._as_word: dict[str, bool] = {}
        self._by_word: dict[str, list[SpeakerEntry]] = {}  # a name or title word -> its speakers
        for e in self.speakers:
            for w in e.names | e.titles | e.caps:
                self._by_word.setdefault(w, []).append(e)

    def _used_as_word(self, word: str) -> bool:
        """Do the transcripts' answers write ``word`` in lower case anywhere (looked up once per
        word)?"""
        if word not in self._as_word:
            self._as_word[word] = self._has_word(word)
        return self._as_word[word]

    def match_speakers(self, name: str) -> list[str]:
        """Speaker names matching a (partial) name or title, e.g. "hopkins", "the minister"."""
        q = fold(name).strip()
        toks = [w for w in words(q) if w not in _HONORIFICS]
        out = []
        for s in self.speakers:
            if q in s.phrases or any(q == p or q in p for p in s.phrases):
                out.append(s.name)
            elif toks and all(t in s.names or t in s.titles for t in toks):
                out.append(s.name)
        return out

    def people_in(self, query: "QueryPlan", limit: int = 3) -> list[Speaker]:
        """The speaker records of the people a question names, or of those with the roles it
        names, within its transcript filter; none when a role names more than ``limit`` people."""
        scope = query.in_scope()
        out = [s for s in self._speakers if s.name in query.speakers]
        if not out and query.roles:
            out = [s for s in self._speakers if s.role in query.roles and (not scope or self.people.get(s.name, set()) & scope)]
        names = list(dict.fromkeys(s.name for s in out))
        return [] if limit and len(names) > limit else out

    def turns_of(self, names: Iterable[str]) -> int:
        """How many turns the named people take, in all the transcripts."""
        names = set(names)
        return sum(s.turns for s in self._speakers if s.name in names)

    def describe(self, query: "QueryPlan") -> str:
        """The named people as the transcripts present them: name, tag, description, aliases."""
        parts: list[str] = []
        for s in self.people_in(query):
            for label in (s.name, s.tag, s.description, *s.aliases):
                if label and label not in parts:
                    parts.append(label)
        return ", ".join(parts) or query.evidence_text

    def residual_topic(self, question: str, query: "QueryPlan") -> list[str]:
        """Content words of the question once speaker references and request words are removed:
        empty for "What did the reader who commented say?"."""
        named = set()
        for e in self.speakers:
            if e.name in query.speakers:
                named |= e.names | e.titles
        out = []
        for w in words(fold(topic_of(question))):
            if w in STOPWORDS or len(w) < 3 or w in named or w in _ROLE_WORDS or w in _QUERY_NOISE or w in _REQUEST:
                continue
            out.append(w)
        return out

    def unknown_names(self, question: str) -> list[str]:
        """Capitalised words of the question (names, places, acronyms) that occur nowhere in the
        transcripts: "What can we learn from France?" asked of an interview that never mentions
        France. The question's first word is not a name."""
        found = []
        for i, m in enumerate(re.finditer(r"[A-Za-zÀ-ÿ][\w'’\-]*", question)):
            w = m.group()
            if i == 0 or not w[0].isupper() or len(w) < 3:
                continue
            f = re.sub(r"'s?$", "", fold(w))  # "Shah's", "Williams'"
            if f in STOPWORDS or f in self.words or any(x in self.words for x in f.split("-")):
                continue
            found.append(w)
        return found

    def neutralize(self, question: str, query: "QueryPlan") -> str:
        """The question with its references to the speakers it names replaced by "they": "What
        did Amar Shah say about X?" -> "What did they say about X?", so that judging the evidence
        is not swayed by a passage mentioning the name."""
        refs = [r for r in self._references(question) if r.speaker in query.speakers]
        if any(r.by_name for r in refs):
            refs = [r for r in refs if r.by_name]  # named by name: leave title-like words alone
        return _replace(question, refs)

    def lexical_text(self, question: str, speakers: list[str]) -> str:
        """The question as the lexical index reads it: references by title to the speakers it
        names become "they". A passage's indexed text carries its speaker's and asker's names but
        not their titles, so "prime minister" there only matches passages that mention the Prime
        Minister (questions put to him, by others); the speaker preference ranks his own answers.
        Names stay: they match the speaker and asker fields ("what did X reply to Y"); and when
        the question also names the speaker, the title is part of its subject ("why did Amar Shah
        want the national director job?") and stays too."""
        if not speakers:
            return question
        refs = [r for r in self._references(question) if r.speaker in speakers]
        if any(r.by_name for r in refs):
            return question
        return _replace(question, refs)

    def _references(self, question: str) -> list["_Reference"]:
        """Where the question refers to a speaker: by name ("Bains", "Amar Shah", "Williams'"),
        or by a title after "the"/"our"/... that includes the title's head noun ("the minister",
        "the finance minister", "the Minister of Seniors"; not "the seniors", a modifier of that
        title, nor "the services")."""
        toks = [(m.start(), m.end(), re.sub(r"'s?$", "", fold(m.group()).strip(".'’-").replace("’", "'")))
                for m in re.finditer(r"\w[\w'’.-]*", question)]
        # a word the question writes in lower case, which the transcripts also use in lower case,
        # is a word, not a name: "young people" does not name Kate Young (in a question written
        # wholly in lower case any word may be a name)
        cased = any(ch.isupper() for ch in question)
        lower = {i for i, (a, _, w) in enumerate(toks)
                 if cased and question[a].islower() and w in self._by_word and self._used_as_word(w)}
        candidates = {id(e): e for _, _, w in toks for e in self._by_word.get(w, ())}
        refs: list[_Reference] = []
        for e in candidates.values():
            def is_name(i: int) -> bool:
                a, b, w = toks[i]
                return (w in e.names and i not in lower) or (w in e.caps and question[a:b].isupper())

            i = 0
            while i < len(toks):
                w = toks[i][2]
                if is_name(i):
                    j = i
                    while j + 1 < len(toks) and is_name(j + 1):
                        j += 1
                    if j == i and i and toks[i - 1][2] in _DETERMINERS | {"a", "an"}:
                        i += 1  # "the Bill", "this Will": a word that is also a name, used as a word
                        continue
                    # the rest of the person's full name written beside it counts too: "David
                    # Blaney" is Dr David Blaney rather than Hon. Steven Blaney
                    a = i
                    while a > 0 and a - 1 not in lower and toks[a - 1][2] in e.titles and toks[a - 1][2] not in _DETERMINERS:
                        a -= 1
                    refs.append(_Reference(toks[a][0], toks[j][1], e.name, j - a + 1, True, tuple(t[2] for t in toks[a : j + 1])))
                    i = j + 1
                    continue
                if w in _DETERMINERS:
                    seq, j = [], i + 1
                    while j < len(toks):
                        t = toks[j][2]
                        if t in e.titles:
                            seq.append(t)
                        elif not (t in ("of", "for") and seq and j + 1 < len(toks) and toks[j + 1][2] in e.titles):
                            break
                        j += 1
                    if seq and e.heads.intersection(seq):
                        exact = " ".join(seq) in e.title_phrases  # "the prime minister" is the whole title
                        refs.append(_Reference(toks[i][0], toks[j - 1][1], e.name, len(seq) + 0.5 * exact, False, tuple(seq)))
                        i = j
                        continue
                i += 1
        return refs

    def speakers_in_question(self, question: str) -> tuple[list[str], list[str], list[str]]:
        """(speaker names, kinds, roles) the question refers to. A speaker named by name counts
        its distinct name words; one referred to by title, the title's words; the best win."""
        score: dict[str, float] = {}
        named: dict[str, set[str]] = {}
        for r in self._references(question):
            if r.by_name:
                named.setdefault(r.speaker, set()).update(r.words)
            else:
                score[r.speaker] = max(score.get(r.speaker, 0.0), r.score)
        score.update({name: float(len(ws)) for name, ws in named.items()})  # a name outranks a title
        best = max(score.values(), default=0.0)
        names = [e.name for e in self.speakers if best and score.get(e.name) == best]
        kinds, roles = [], []
        for t in (re.sub(r"'s$", "", w) for w in words(fold(question))):  # "the reader's comment"
            if t in _ROLE_WORDS:
                what, value = _ROLE_WORDS[t]
                (kinds if what == "kind" else roles).append(value)
        if len(names) > max(3, len(self.speakers) // 2):  # too vague to mean anyone in particular
            names = []
        return names, sorted(set(kinds)), sorted(set(roles))



def _replace(question: str, refs: list[_Reference]) -> str:
    """The question with each reference replaced by "they" (overlapping ones once)."""
    out, at = [], 0
    for r in sorted(refs, key=lambda r: (r.start, -r.end)):
        if r.start < at:
            continue
        out += [question[at : r.start], "they"]
        at = r.end
    return "".join(out) + question[at:]


_NAME_PREFIX = re.compile(r"^(mr|mrs|ms|miss|mx|dr|prof|professor|hon|rt|right hon|sir|dame|lord|lady|rev)\b\.?", re.I)


_TITLE_PARTS = re.compile(r"\s+and\s+|\s*[,;/()\[\]–—]\s*|\s+-\s+")  # "Deputy Prime Minister and Minister of X"
_COMPLEMENT = re.compile(r"\s+(?:of|for|to|on|in|at|with|from)\s+")


@functools.lru_cache(maxsize=65536)
def _speaker_parts(name: str, tag: str, description: str, aliases: tuple[str, ...],
                   names: tuple[str, ...]) -> tuple[list[str], frozenset, frozenset, frozenset, frozenset, frozenset]:
    """What one speaker record adds to its entry: phrases, name tokens, capital tags, title
    words, title heads and title phrases (the same person is listed in many transcripts: made
    once per distinct record)."""
    phrases: list[str] = []
    for label in [name, tag, *names, *aliases]:
        f = fold(label)
        if f and f not in phrases:
            phrases.append(f)
    name_labels = [name, tag, *names] + [a for a in aliases if _NAME_PREFIX.match(a)]
    tokens = {w for label in name_labels for w in words(fold(label))
              if w not in _HONORIFICS and len(w) >= 2 and w not in STOPWORDS}
    caps = {fold(tag)} if tag.isupper() and len(tag) >= 2 and fold(tag) in STOPWORDS else set()
    titles: set[str] = set()
    heads: set[str] = set()
    title_phrases: set[str] = set()
    for label in [description, *aliases, tag, name]:
        titles.update(w for w in words(fold(label)) if w not in STOPWORDS and len(w) > 2)
        for n, part in enumerate(_TITLE_PARTS.split(fold(label))):
            # the head noun ends the phrase before its complement: "minister" of "deputy prime
            # minister", of "minister of finance", of "cabinet secretary for education"; the
            # parts of a complement's list have none ("science" in "Minister of Innovation,
            # Science and Industry")
            head_part, *complement = _COMPLEMENT.split(part, maxsplit=1)
            before = [w for w in words(head_part) if w not in STOPWORDS and w not in _HONORIFICS and len(w) > 2]
            if before and (n == 0 or complement):
                heads.add(before[-1])
            phrase = " ".join(w for w in words(part) if w not in STOPWORDS and len(w) > 2)
            if phrase:
                title_phrases.add(phrase)
    return phrases, frozenset(tokens), frozenset(caps), frozenset(titles), frozenset(heads), frozenset(title_phrases)


def _speaker_entries(speakers: list[Speaker]) -> list[SpeakerEntry]:
    """Name tokens come from the speaker's name and tag, and from aliases that are names
    ("Hon. Anthony Rota"); other aliases and descriptions ("Minister of Finance") are titles."""
    merged: dict[str, SpeakerEntry] = {}
    for s in speakers:
        e = merged.setdefault(s.name, SpeakerEntry(s.name, s.role, set(), set(), []))
        phrases, names, caps, titles, heads, title_phrases = _speaker_parts(s.name, s.tag, s.description, tuple(s.aliases),
                                                                            tuple(s.names))
        e.phrases.extend(f for f in phrases if f not in e.phrases)
        e.names |= names
        e.caps |= caps
        e.titles |= titles
        e.heads |= heads
        e.title_phrases |= title_phrases
    # a "name" shared by many speakers ("chair" in "The Chair" and "The Acting Chair") is a title
    counts: dict[str, int] = {}
    for e in merged.values():
        for w in e.names:
            counts[w] = counts.get(w, 0) + 1
    for e in merged.values():
        e.names = {w for w in e.names if counts[w] <= 2}
    return list(merged.values())



# ---------------------------------------------------------------------------- follow-ups

# How a short follow-up opens ("and Uganda?", "what about the care homes?") (generic English).
_LEAD = re.compile(r"^\s*(and what about|and how about|what about|how about|what of|same for|and|but|also|so|then|now)\b[\s,]*", re.I)
_PRONOUNS = {"he", "she", "him", "her", "his", "hers", "they", "them", "their", "it", "its", "that", "this", "those", "these", "there"}
_PERSON = {"he", "she", "him", "her", "his", "hers"}
_PREPOSITION = re.compile(r"^(about|on|regarding|concerning|for|in|with|from|to|of)\s+\S", re.I)
_ANY_PREPOSITION = re.compile(r"\b(about|on|regarding|concerning|for|in|with|from|to|of|at|over|towards?)\b", re.I)
# A follow-up that is a question of its own ("and why?", "and what happens to the theatres?").
_ASKS = re.compile(r"^(what|why|how|when|where|who|whom|whose|which|is|are|was|were|do|does|did|can|could|will|would|should|has|have|had)\b", re.I)
# Words that point back at the earlier exchange rather than name a topic of their own.
_ANAPHORA = {"they", "them", "their", "it", "its", "that", "this", "those", "these", "there",
             "next", "else", "instead", "later", "further", "afterwards", "why", "how", "so"}
_GENERIC = {"next", "else", "instead", "rather", "later", "further", "afterwards", "also", "still", "other"}
# People referred to by role, not name ("and the interviewer?"): a new speaker, the same topic.
_PEOPLE = {w for w, (what, _) in _ROLE_WORDS.items() if what == "role"} | {"reader", "readers", "commenter"}


@dataclass
class HistoryTurn:
    """What the resolver needs of an earlier exchange."""

    question: str  # as resolved
    filters: dict[str, Any] = field(default_factory=dict)
    speaker: str | None = None  # main speaker of its answer
    speakers: list[str] = field(default_factory=list)  # speakers the question referred to
    transcript: str | None = None  # transcript of its answer's first source ("this interview")


@dataclass
class Resolution:
    text: str
    filters: dict[str, Any]
    speakers: list[str]
    followup: bool


def _split_lead(question: str) -> tuple[re.Match[str] | None, str]:
    m = _LEAD.match(question)
    return m, (question[m.end():] if m else question).strip()


def is_followup(question: str) -> bool:
    """Does the question lean on the conversation? "and Uganda?", "why?", "why does he think
    that?" do; "Who is Amar Shah?" does not, nor "And why did whole fjords empty out after quota
    became tradeable?": a question of its own (a question word, then six content words) that
    happens to open with "and"."""
    q = question.strip()
    toks = words(fold(q))
    m, rest = _split_lead(q)
    if m:
        own = content_words(rest)
        return not (_ASKS.match(rest) and len(own) >= 6 and not set(toks) & _PERSON)
    if not content_words(q):  # "why?", "how so?"
        return True
    return any(t in _PRONOUNS for t in toks) and len(content_words(q)) <= 4


def _ending(question: str) -> str:
    end = re.search(r"[?.!]+\s*$", question)
    return end.group().strip() if end else "?"


def _body(question: str) -> str:
    return re.sub(r"[?.!\s]+$", "", question)


def _name_words(names: list[str]) -> set[str]:
    return {w for n in names for w in words(fold(n)) if w not in _HONORIFICS}


def _tokens(text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group()) for m in re.finditer(r"[\w][\w'’.\-]*[\w]|\w", text)]


def _person_span(question: str, names: set[str]) -> tuple[int, int] | None:
    """Where the question refers to a person: a run of name words ("Helen Osei"), a role ("the
    interviewer"), or he/she."""
    toks = _tokens(question)
    for i, (s, e, t) in enumerate(toks):
        f = re.sub(r"'s?$", "", fold(t).replace("’", "'"))
        if f in names:
            j = i
            while j + 1 < len(toks) and re.sub(r"'s?$", "", fold(toks[j + 1][2]).replace("’", "'")) in names:
                j += 1
            end = toks[j][1] - (2 if re.search(r"'s$", fold(toks[j][2]).replace("’", "'")) else 0)
            return s, end
        if f in _PEOPLE:
            start = toks[i - 1][0] if i and fold(toks[i - 1][2]) in _DETERMINERS else s
            return start, e
        if f in ("he", "she"):
            return s, e
    return None


def _proper_runs(question: str, exclude: set[str]) -> list[tuple[int, int]]:
    """Runs of capitalised words past the first word, that are not the people in ``exclude``."""
    runs: list[tuple[int, int]] = []
    toks = _tokens(question)
    for i, (s, e, t) in enumerate(toks):
        f = re.sub(r"'s?$", "", fold(t).replace("’", "'"))
        if i == 0 or not t[0].isupper() or f in exclude or f in STOPWORDS or f == "i":
            continue
        if runs and re.fullmatch(r"\s+", question[runs[-1][1]:s] or "x"):
            runs[-1] = (runs[-1][0], e)
        else:
            runs.append((s, e))
    return runs


def _swap_subject(prev: str, new: str, people: set[str], rarity: Callable[[str], float]) -> str:
    """The earlier question with its subject replaced by ``new``: a proper name by a name ("What
    can we learn from Norway?" + "Iceland"), else the phrase after its last preposition ("What did
    Webb say about the libraries?" + "the care homes"), else its most specific word."""
    body, end = _body(prev), _ending(prev)
    last = list(_ANY_PREPOSITION.finditer(body))
    tail_from = last[-1].end() if last else len(body)
    if new[:1].isupper():
        runs = _proper_runs(body, people)
        inside = [r for r in runs if r[0] >= tail_from]
        if inside or runs:
            s, e = (inside or runs)[-1]
            return f"{body[:s]}{new}{body[e:]}{end}"
    if last and body[tail_from:].strip():
        return f"{body[:tail_from]} {new}{end}"
    terms = [w for w in content_words(body) if w not in people]
    if terms:
        target = max(terms, key=rarity)
        pattern = re.compile(rf"\b{re.escape(target)}\w*", re.I)
        if pattern.search(body):
            return pattern.sub(new, body, count=1) + end
    return f"{body} {new}{end}"


def _name_the_person(question: str, name: str) -> str:
    """The first he/she/him becomes the name, a first his/hers or possessive her ("her
    teachers") the name's; later ones read naturally as they are."""
    def sub(m: re.Match[str]) -> str:
        w, after = m.group(1).lower(), m.group(3) or ""
        possessive = w in ("his", "hers") or (w == "her" and after and fold(after) not in STOPWORDS)
        return f"{name}'s" if possessive else name
    return re.sub(r"\b(he|she|him|his|hers|her)\b(?=(\s+([\w'’]+))?)", sub, question, count=1, flags=re.I)


def resolve(question: str, history: list[HistoryTurn], filters: dict[str, Any] | None, rarity: Callable[[str], float]) -> Resolution:
    """A follow-up read against the latest turn of the conversation (whose question is already
    resolved, so a chain resolves turn by turn). ``rarity(word)`` ranks words by how specific they
    are in the corpus (idf). What is carried: the earlier question's filters; its speakers, or the
    speaker of its answer when the follow-up says he/she; its subject when the follow-up names a
    new one; its topic when the follow-up names a new speaker."""
    filters = dict(filters or {})
    if not history or not is_followup(question):
        return Resolution(question, filters, [], False)
    prev = history[-1]
    carried = {**prev.filters, **filters}
    speakers = list(prev.speakers)
    person = prev.speakers[0] if len(prev.speakers) == 1 else prev.speaker
    people = _name_words(prev.speakers + ([prev.speaker] if prev.speaker else []))
    known = _name_words([n for t in history for n in t.speakers + ([t.speaker] if t.speaker else [])])
    toks = words(fold(question))
    m, rest = _split_lead(question)
    new_subject = _body(rest)
    new_words = content_words(new_subject)

    if m and new_words and not _ASKS.match(rest) and not set(toks) & (_PRONOUNS - _PERSON):
        if set(toks) & _PERSON and person:
            # "and what about her teachers?": hers is the earlier answer's speaker, named unless
            # the earlier question names her already
            speakers = [person]
            if not people & set(words(fold(prev.question))):
                new_subject = _name_the_person(new_subject, person)
        subject_words = {w for w in new_words if w not in _DETERMINERS}
        if subject_words <= _PEOPLE or subject_words <= known - people:
            # "and the interviewer?": someone else on the same topic
            span = _person_span(_body(prev.question), people)
            if span:
                body = _body(prev.question)
                return Resolution(f"{body[:span[0]]}{new_subject}{body[span[1]:]}{_ending(prev.question)}", carried,
                                  [], True)
            return Resolution(f"{prev.question} ({new_subject})", carried, [], True)
        lead = _PREPOSITION.match(new_subject)
        if lead:
            # "and about the arts sector?" after "What did Bains say about business loans?": the new
            # phrase takes the place of the earlier one that opens with the same preposition (else
            # of the earlier question's last prepositional phrase)
            body = _body(prev.question)
            at = list(re.finditer(rf"\b{re.escape(lead.group(1))}\b", body, re.I)) or list(_ANY_PREPOSITION.finditer(body))
            if at:
                return Resolution(f"{body[: at[-1].start()].rstrip()} {new_subject}{_ending(prev.question)}", carried, speakers, True)
            return Resolution(f"{body} {new_subject}{_ending(prev.question)}", carried, speakers, True)
        # "and Uganda?": the new subject replaces the earlier question's; the people it named stay
        # (they are who was asked, not what about)
        return Resolution(_swap_subject(prev.question, new_subject, people, rarity), carried, speakers, True)

    text = rest if m and rest.strip(" ?.!") else question
    if set(toks) & _PERSON and person:
        # "what did she say about funding?": the speaker of the earlier answer, by name
        speakers = [person]
        own = [w for w in content_words(text) if w not in _PRONOUNS and w not in _REQUEST and w not in _GENERIC]
        if own and not set(words(fold(text))) & _ANAPHORA:
            return Resolution(_name_the_person(text, person), carried, speakers, True)
    # "why does he think that?", "and why?": the question, with the earlier one as its context
    return Resolution(f"{text} ({prev.question})", carried, speakers, True)


# ---------------------------------------------------------------------------- the plan

ANSWER_TYPES = ("date", "number", "amount", "person", "organisation", "place", "reason", "summary", "other")
# What kind of answer a question expects, from its wording alone (generic English question words).
_ANSWER_TYPE = (
    ("summary", re.compile(r"^\s*(please\s+)?(summari[sz]e|outline|give (me |us )?an? (overview|summary))\b|"
                           r"\b(what|how) (was|were) (the )?(discussion|debate|conversation)\b|\bdiscuss(ed|ion)?\b", re.I)),
    # "when" asks for a time at the head of a question ("When did...", "Since when..."), not as a
    # conjunction inside one ("What did X say when discussing Y?")
    ("date", re.compile(r"^\s*((and|so|but)\s+)?(since |until )?when\b|\bwhen (did|was|were|is|are|will|would|does|do|has|had)\b"
                        r"|\b(what|which) (year|date|day|month|time)\b|\bhow long ago\b|\bin what year\b", re.I)),
    # "how much of the work ..." asks for a share (a number), "how much money ..." an amount
    ("amount", re.compile(r"\bhow much\b(?!\s+of\b)|\b(what|which) (was |is )?the (cost|price|amount|budget|salary|fee|sum)\b", re.I)),
    ("number", re.compile(r"\bhow much of\b|\bhow (many|often|old|long|far|big|large)\b|\b(what|which) (number|percentage|proportion|share|rate)\b", re.I)),
    ("person", re.compile(r"^\s*(who|whom)\b|\bwho (was|is|were|are|did|does)\b|\b(which|what) (person|people|member|minister|speaker)\b", re.I)),
    ("organisation", re.compile(r"\b(which|what) (company|companies|organi[sz]ations?|firm|agency|department|bank|institution|group)\b", re.I)),
    ("place", re.compile(r"^\s*where\b|\b(which|what) (country|countries|city|cities|place|region|town)\b", re.I)),
    ("reason", re.compile(r"^\s*why\b|\bwhat (was|is|were|are) the reasons?\b|\bfor what reason\b|\bhow come\b", re.I)),
)


def answer_type(question: str) -> str:
    """The kind of answer the question expects: one of ANSWER_TYPES."""
    for name, pattern in _ANSWER_TYPE:
        if pattern.search(question):
            return name
    return "other"


_WH = r"(?:what|how|why|when|who|whom|whose|where|which|did|do|does|is|are|was|were|has|have|had|can|could|will|would|should)"
_CLAUSES = re.compile(rf"\?\s+(?=\S)|;\s+|,\s*(?:and|but|or)\s+(?={_WH}\b)|\s+and\s+(?={_WH}\s)", re.I)
_ATTRIBUTION = re.compile(r"^(?:according to|in the (?:view|opinion|words) of|as (?:said|put) by)\b", re.I)
# a list ends the question: "A, B(,) and C" with no clause after it ("Other than A and B, what
# else ...?" is one question)
_LIST = re.compile(rf",(?![^,]*\b{_WH}\b)[^,]+,?\s+(?:and|or)\s+(?!{_WH}\b)[^,]+$", re.I)
_LIST_SEP = re.compile(r",\s*(?:and\s+|or\s+)?|\s+(?:and|or)\s+", re.I)


def question_parts(question: str) -> list[str]:
    """The parts of a question that asks several things, each to be answered: its clauses ("How
    was tourism affected, and what did the government do?", "What is X? And Y?") or the items of
    a list ("the trend of recruiting, the reasons for it, and the steps taken"; "masks, gowns and
    N95 masks"). A list needs a comma: "mental and emotional health" is one thing. One part (or
    none) is returned as []."""
    q = question.strip()
    parts = [c for c in _CLAUSES.split(q) if c and c.strip(" ?.")]
    if len(parts) < 2 and _LIST.search(q):
        parts = [c for c in _LIST_SEP.split(q) if c and c.strip(" ?.")]
    parts = [p.strip(" ?.,;") for p in parts]
    # "according to X, ..." says whose answer is wanted, not a thing to answer
    parts = [p for p in parts if content_words(fold(p)) and not _ATTRIBUTION.match(p)]
    return parts if len(parts) >= 2 else []


# "in the interview with X", "in the episode with X", "in the conversation with X"
_SCOPE_WITH = r"\b§KIND§\s+(?:with|of|featuring)\s+((?:[A-Z][\w'’.\-]*\s?){1,4})"  # case matters: a name follows


@dataclass
class QueryPlan:
    """Everything the later steps need to know about a question."""

    question: str  # as asked
    text: str  # after follow-up resolution: what the question means in this conversation
    embed_text: str  # what is embedded for dense search (request phrasing stripped)
    lexical_text: str  # what the lexical index reads (titles of the named speakers neutralised)
    evidence_text: str  # what the chosen sentences are judged against (named speakers neutralised)
    filters: dict[str, Any] = field(default_factory=dict)  # explicit and carried filters
    speakers: list[str] = field(default_factory=list)  # speaker names the question refers to
    kinds: list[str] = field(default_factory=list)  # kinds it refers to ("the reader": comment)
    roles: list[str] = field(default_factory=list)  # roles it refers to ("the interviewer")
    scope: list[str] = field(default_factory=list)  # transcripts it names (title, file, guest)
    answer_type: str = "other"  # one of ANSWER_TYPES
    followup: bool = False  # resolved against the conversation
    unknown_names: list[str] = field(default_factory=list)  # capitalised words the corpus never has
    topic: list[str] = field(default_factory=list)  # content words once speakers and request words go
    parts: list[str] = field(default_factory=list)  # what a question asking several things asks (question_parts)
    who_is: bool = False  # it asks who the people it names are ("Who is Amar Shah?"), not what they said
    overview: bool = False  # it asks what a transcript as a whole is about ("What is this interview about?")
    cast: bool = False  # it asks who takes part in one ("Who are the speakers?"): the overview's first line only
    key_points: bool = False  # it asks for the key points of one, or of the people it names ("main takeaways?")
    record: str = ""  # "date" or "source": it asks when a transcript was made, or where it comes from

    def in_scope(self) -> set[str]:
        """The transcripts the question is limited to by its transcript filter (empty: all)."""
        scope = self.filters.get("transcript")
        return {scope} if isinstance(scope, str) else set(scope or ())

    @property
    def refers(self) -> bool:
        """Does the question name a speaker, role or kind?"""
        return bool(self.speakers or self.kinds or self.roles)


def scope_of(question: str, corpus: Corpus, words: Iterable[str] = TRANSCRIPT_WORDS) -> list[str]:
    """Transcripts the question names: by file name ("covid_3", "interview.txt"), by whole title,
    or as "the interview/episode with X" where X names people who speak in them."""
    f = fold(question)
    out = []
    for tid, title in corpus.titles.items():
        stem = fold(re.sub(r"\.\w+$", "", tid.rsplit("/", 1)[-1]))
        ft = fold(title)
        if (len(stem) >= 4 and re.search(rf"(?<!\w){re.escape(stem)}(?!\w)", f)) or (len(ft.split()) >= 2 and ft in f):
            out.append(tid)
    if out:
        return sorted(out)
    for m in _patterns(tuple(words))["scope_with"].finditer(question):
        name = m.group(1).strip(" .,?!")
        people = corpus.match_speakers(name)
        found = sorted({t for p in people for t in corpus.people.get(p, ())})
        if found and len(found) < len(corpus.titles):
            return found
    return []


# "Who is Amar Shah?", "Who's AS?", "Who was the interviewer?", "Tell me about the guest.": what
# follows the request names people and nothing else
_WHO_IS = re.compile(r"^\s*(?:and\s+)?(?:(?:who(?:'s|’s|\s+(?:is|was|are|were))|tell\s+(?:me|us)\s+(?:more\s+)?about|"
                     r"what\s+do\s+(?:we|you)\s+know\s+about)\s+(?P<who>.+?)|"
                     # "What is his job?", "What's Amar Shah's role?", "What does she do?"
                     r"what(?:'s|’s|\s+is|\s+was)\s+(?P<whose>.+?)(?:'s|’s|\s+(?:his|her|their))?\s+(?:job|role|title|position|"
                     r"occupation|profession|background)|what\s+(?:does|did)\s+(?P<doer>.+?)\s+do(?:\s+for\s+a\s+living)?)[\s?.!]*$", re.I)


def asks_who(question: str, query: QueryPlan, corpus: Corpus) -> bool:
    """Does the question ask who the people it names are, with no subject besides them?"""
    m = _WHO_IS.match(question)
    who = m and (m.group("who") or m.group("whose") or m.group("doer"))
    return bool(who and query.refers and not query.unknown_names and not corpus.residual_topic(who, query))


# "What is this interview about?", "What topics does the episode cover?", "Give me an overview of
# the conversation", "Summarize this hearing", "What was discussed?": the transcript as a whole is
# the subject, with nothing after it (a question "about X" asks about X)
_KIND = "§KIND§"  # the words that name a transcript (Settings.planning.transcript_words): filled in by _patterns
_THE = r"(?:this|the|that|these|those|today[’']s)"
_OVERVIEW = (
    r"^\s*(?:(?:so|and|ok(?:ay)?|well)[\s,]+)?(?:"
    rf"what(?:[’']s|\s+is|\s+was|\s+are|\s+were)\s+(?:{_THE}\s+)?{_KIND}\s+(?:all\s+)?about|"
    rf"what\s+(?:is|was|are|were)\s+(?:the\s+)?(?:main\s+)?(?:topics?|subjects?|themes?|gist|points?)\s+of\s+{_THE}\s+{_KIND}|"
    rf"what\s+(?:is|was|were|got|gets)\s+(?:discussed|covered|talked\s+about)(?:\s+in\s+{_THE}\s+{_KIND})?|"
    rf"what\s+(?:main\s+)?(?:topics|subjects|themes|issues|questions)\s+(?:are|were|does|did|do)\s+(?:{_THE}\s+{_KIND}\s+)?"
    r"(?:cover(?:ed)?|discuss(?:ed)?|address(?:ed)?|raised?|asked|come\s+up|came\s+up|deal\s+with|dealt\s+with|touch(?:ed)?\s+on)"
    rf"(?:\s+in\s+{_THE}\s+{_KIND})?|"
    rf"what\s+(?:does|did)\s+{_THE}\s+{_KIND}\s+(?:cover|discuss|deal\s+with|talk\s+about|address|touch\s+on)|"
    r"(?:(?:please\s+|can\s+you\s+|could\s+you\s+)?give\s+(?:me|us)\s+)?(?:an?\s+)?(?:short\s+|brief\s+|quick\s+)?"
    rf"(?:overview|summary|outline|synopsis|gist|rundown)\s+of\s+{_THE}\s+{_KIND}|"
    rf"(?:(?:please|can\s+you|could\s+you)\s+)?(?:summari[sz]e|sum\s+up)\s+{_THE}\s+{_KIND}"
    r")[\s?.!]*$")


# "Who is in this interview?", "Who are the speakers?", "Who takes part in the hearing?"
_CAST = (
    r"^\s*(?:(?:so|and|ok(?:ay)?|well)[\s,]+)?(?:"
    rf"who(?:[’']s|\s+is|\s+was|\s+are|\s+were)\s+(?:(?:in|on|speaking\s+in|taking\s+part\s+in)\s+{_THE}\s+{_KIND}|"
    rf"the\s+(?:speakers|participants|people)(?:\s+(?:in|on)\s+{_THE}\s+{_KIND})?)|"
    rf"who\s+(?:takes|took|is\s+taking|was\s+taking)\s+part(?:\s+in\s+{_THE}\s+{_KIND})?|"
    rf"who\s+(?:speaks|spoke|is\s+speaking|talks|talked)(?:\s+in\s+{_THE}\s+{_KIND})?"
    r")[\s?.!]*$")


# "What are the key takeaways from this interview?", "Main points?", "What were the main points Amar
# Shah made?", "Summarize what the guest said", "Sum up Bains's answers": the key points of a whole
# transcript, or of the people named (a "who" that names nobody the corpus knows makes it no such question)
_POINTS = r"(?:takeaways?|points?|messages?|lessons?|findings?|ideas?|arguments?|themes?|conclusions?|insights?)"
_KEY_POINTS = (
    r"^\s*(?:(?:so|and|ok(?:ay)?|well)[\s,]+)?(?:"
    r"(?:(?:please\s+|can\s+you\s+|could\s+you\s+)?(?:give|list|tell)\s+(?:me|us)\s+|list\s+)?"
    r"(?:what\s+(?:are|were)\s+)?(?:the\s+)?(?:key|main|most\s+important|big(?:gest)?|central)\s+" + _POINTS +
    rf"(?:\s+(?:of|from|in)\s+{_THE}\s+{_KIND})?"
    r"(?:\s+(?:(?:of|from|by|that)\s+)?(?P<who>.+?)(?:\s+(?:made|makes|said|says|raised|raises|gave|gives))?)??"
    rf"(?:\s+(?:in|from)\s+{_THE}\s+{_KIND})?|"
    r"(?:(?:please|can\s+you|could\s+you)\s+)?(?:summari[sz]e|sum\s+up)\s+what\s+(?P<who2>.+?)\s+"
    rf"(?:said|says|say|thinks?|thought|argued?|argues|told\s+\w+)(?:\s+in\s+{_THE}\s+{_KIND})?|"
    r"(?:(?:please|can\s+you|could\s+you)\s+)?(?:summari[sz]e|sum\s+up)\s+(?P<who3>.+?)(?:[’']s|[’'])\s+"
    r"(?:views|answers|points|arguments|position|remarks|comments|testimony|evidence|words)"
    r")[\s?.!]*$")
_NOBODY = re.compile(r"^(?:was|were|is|has\s+been|had\s+been|everyone|everybody|they|people)$", re.I)
# "What did Amar Shah say?", "What does the minister think?": no subject, so all of it
_SAID_ONLY = re.compile(r"^\s*(?:and\s+)?what\s+(?:did|does|do|has|have)\s+(?P<who>.+?)\s+(?:say|said|talk\s+about|discuss|"
                        r"argue|think|have\s+to\s+say)[\s?.!]*$", re.I)


@functools.lru_cache(maxsize=16)
def _patterns(words: tuple[str, ...]) -> dict[str, re.Pattern[str]]:
    """The patterns that name a transcript, with ``words`` (and their plurals) as what a
    transcript is called ("interview", "episode", "hearing", ...)."""
    kind = "(?:" + "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)) + ")s?"
    out = {name: re.compile(src.replace("§KIND§", kind), re.I)
           for name, src in (("overview", _OVERVIEW), ("cast", _CAST), ("key_points", _KEY_POINTS),
                             ("when", _WHEN_HELD), ("where", _WHERE_FROM))}
    out["scope_with"] = re.compile(_SCOPE_WITH.replace("§KIND§", "(?i:" + kind + ")"))
    return out


def asks_key_points(question: str, query: QueryPlan, corpus: Corpus, said_points: int = 0,
                    words: Iterable[str] = TRANSCRIPT_WORDS) -> bool:
    """Does the question ask for the key points of whole transcripts (of everyone in them, or of
    the people it names), and nothing more ("the main points the minister made about loans" asks
    about loans)? With ``said_points``, so does "What did X say?" when the people it names take
    that many turns or more."""
    m = _patterns(tuple(words))["key_points"].match(question)
    if not m:
        # "What did Amar Shah say?" of someone who says a lot: the key points of what they say
        m = _SAID_ONLY.match(question)
        return bool(m and said_points and query.speakers and not query.unknown_names
                    and not corpus.residual_topic(m.group("who"), query) and corpus.turns_of(query.speakers) >= said_points)
    who = (m.group("who") or m.group("who2") or m.group("who3") or "").strip()
    if not who or _NOBODY.match(who):
        return True
    return bool(query.refers and not query.unknown_names and not corpus.residual_topic(who, query))


# "When was this interview recorded?", "What is the date of the hearing?", "Where was the interview
# published?": what the transcript's front matter says of it
_WHEN_HELD = (
    r"^\s*(?:(?:so|and|ok(?:ay)?|well)[\s,]+)?(?:"
    rf"when\s+(?:was|is|did|were)\s+{_THE}\s+{_KIND}(?:\s+(?:recorded|held|published|conducted|given|broadcast|aired|"
    r"released|made|done|take\s+place|happen))?|"
    rf"what\s+(?:is|was)\s+the\s+date\s+of\s+{_THE}\s+{_KIND}|what\s+date\s+(?:is|was)\s+{_THE}\s+{_KIND}"
    r"(?:\s+(?:recorded|held|published))?"
    r")[\s?.!]*$")
_WHERE_FROM = (
    r"^\s*(?:(?:so|and|ok(?:ay)?|well)[\s,]+)?(?:"
    rf"where\s+(?:was|is|did|were)\s+{_THE}\s+{_KIND}\s+(?:published|broadcast|aired|released|from|come\s+from|recorded|held|"
    r"first\s+published)|"
    rf"what\s+is\s+the\s+source\s+of\s+{_THE}\s+{_KIND}|who\s+published\s+{_THE}\s+{_KIND}"
    r")[\s?.!]*$")


def asks_about_record(question: str, words: Iterable[str] = TRANSCRIPT_WORDS) -> str:
    """"date" or "source" when the question asks when a transcript was made or where it comes
    from, and nothing more; else ""."""
    found = _patterns(tuple(words))
    if found["when"].match(question):
        return "date"
    return "source" if found["where"].match(question) else ""


def asks_overview(question: str, words: Iterable[str] = TRANSCRIPT_WORDS) -> bool:
    """Does the question ask what a transcript as a whole is about, and nothing more?"""
    return bool(_patterns(tuple(words))["overview"].match(question))


def asks_cast(question: str, words: Iterable[str] = TRANSCRIPT_WORDS) -> bool:
    """Does the question ask who takes part in a transcript, and nothing more?"""
    return bool(_patterns(tuple(words))["cast"].match(question))


def plan(question: str, history: list[HistoryTurn], corpus: Corpus, filters: dict[str, Any] | None,
         rarity: Callable[[str], float], *, strip_request: bool = True, title_neutral: bool = True,
         scope: bool = True, overview: bool = True, said_points: int = 0,
         transcript_words: Iterable[str] = TRANSCRIPT_WORDS) -> QueryPlan:
    """Read a question (with the conversation so far) against the corpus. The keyword switches
    turn single rules off, for the ablation in docs/EVALUATION.md."""
    res = resolve(question, history, filters, rarity)
    speakers, kinds, roles = corpus.speakers_in_question(res.text if not res.followup else question)
    speakers = speakers or res.speakers
    words = tuple(transcript_words)
    found_scope = scope_of(res.text, corpus, words) if scope else []
    filters = dict(res.filters)
    if found_scope and not filters.get("transcript"):
        filters["transcript"] = found_scope if len(found_scope) > 1 else found_scope[0]
    topic_text = topic_of(res.text) if strip_request else res.text
    draft = QueryPlan(question=question, text=res.text, embed_text=topic_text, lexical_text=res.text,
                      evidence_text=topic_text, filters=filters, speakers=speakers, kinds=kinds, roles=roles,
                      scope=found_scope, answer_type=answer_type(res.text), followup=res.followup,
                      parts=question_parts(res.text))
    if title_neutral:
        draft.lexical_text = corpus.lexical_text(res.text, speakers)
    if draft.refers:
        draft.evidence_text = corpus.neutralize(topic_text, draft)
    draft.unknown_names = corpus.unknown_names(res.text)
    draft.topic = corpus.residual_topic(res.text, draft)
    # (a follow-up's own words say whom it asks about: "Who is she?" after "What did the reader say?")
    draft.who_is = asks_who(question if res.followup else res.text, draft, corpus)
    if draft.who_is:
        # the sentences that say who they are read like what the transcripts say of them: their
        # names with their titles or descriptions ("Amar Shah, National Clinical Director ...")
        draft.embed_text = draft.evidence_text = corpus.describe(draft)
    # (its own words, not read as a follow-up)
    draft.cast = overview and asks_cast(question, words)
    draft.key_points = overview and not res.followup and asks_key_points(question, draft, corpus, said_points, words)
    draft.record = asks_about_record(question, words) if overview else ""
    draft.overview = bool(draft.cast or draft.key_points or draft.record) or (overview and asks_overview(question, words))
    if draft.overview and not draft.scope and not filters.get("transcript") and history and history[-1].transcript:
        # "What is this interview about?" in a conversation: the one its last answer came from
        draft.scope = [history[-1].transcript]
    return draft
