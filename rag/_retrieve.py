"""Hybrid, interview-aware retrieval: dense (Chroma) + BM25, fused; speaker references in the
question rank that speaker's passages first; filters; diversity across answers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._records import Passage, Retrieved, Speaker
from ._text import STOPWORDS, fold, words

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
    "interviewee": ("role", "interviewee"),
    "guest": ("role", "interviewee"),
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

_STEMMER = None

# How people phrase a request for content ("summarize the discussion about X", "what did the
# committee say about X") carries no topic: strip it before searching (generic English).
_META = re.compile(
    r"^\s*(please\s+)?(can you\s+|could you\s+)?(summari[sz]e|describe|explain|outline|tell me( about)?|give me)?\s*"
    r"((what|how) (was|were|is|are|did|does|do) )?(the |a )?"
    r"((whole |overall |main |general )?(discussion|debate|conversation|talk|dialogue|exchange|meeting|committee|group|panel|"
    r"opinions?|views?|positions?|arguments?|points?|thoughts?|ideas?|decisions?|conclusions?|outcome|summary)s?\b\s*)+"
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


def query_tokens(text: str) -> list[str]:
    return [t for t in stem_tokens(text) if t not in _NOISE_STEMS]


def stem_tokens(text: str) -> list[str]:
    global _STEMMER
    if _STEMMER is None:
        import Stemmer

        _STEMMER = Stemmer.Stemmer("english")
        _NOISE_STEMS.update(_STEMMER.stemWords(sorted(_QUERY_NOISE)))
    toks = [w for w in words(fold(text)) if w not in STOPWORDS and len(w) > 1]
    return _STEMMER.stemWords(toks)


_NOISE_STEMS: set[str] = set()


@dataclass
class SpeakerEntry:
    name: str
    role: str
    names: set[str]  # folded name tokens (first names, surnames, initials tags)
    titles: set[str]  # folded words of titles/descriptions ("minister", "chair", "finance")
    phrases: list[str]  # folded full names and aliases
    heads: set[str] = field(default_factory=set)  # the titles' head nouns ("minister" of "Minister of Finance")
    title_phrases: set[str] = field(default_factory=set)  # each title's words, joined ("minister finance")


@dataclass
class Query:
    text: str  # what is searched (after follow-up resolution)
    filters: dict[str, Any] = field(default_factory=dict)
    speakers: list[str] = field(default_factory=list)  # speaker names the question refers to
    kinds: list[str] = field(default_factory=list)  # kinds the question refers to ("the reader")
    roles: list[str] = field(default_factory=list)


FILTER_KEYS = ("speaker", "transcript", "role", "kind", "date")
_DETERMINERS = {"the", "our", "your", "this", "that"}


@dataclass
class _Reference:
    start: int  # character range in the question
    end: int
    speaker: str
    score: float  # name words, or title words (+0.5 for a whole title)
    by_name: bool
    words: tuple[str, ...]  # the name or title words it matched


class Index:
    """The store's current passages in memory, with a BM25 index and the speakers."""

    def __init__(self, passages: list[Passage], speakers: list[Speaker], versions: dict[str, str], fingerprint: str,
                 vectors: np.ndarray | None = None) -> None:
        import bm25s

        self.passages = passages
        self.vectors = vectors
        self.fingerprint = fingerprint
        self.versions = versions
        self.by_chunk = {p.chunk_id: i for i, p in enumerate(passages)}
        self.base_of = [re.sub(r"/p\d+$", "", p.chunk_id) for p in passages]
        # who spoke and who asked are searchable with what was said and asked
        corpus = [
            stem_tokens(f"{p.speaker}\n{p.question_speaker}\n{p.question}\n{p.text}") or ["_empty_"]
            for p in passages
        ]
        self.bm25 = bm25s.BM25(k1=1.2, b=0.75)
        if passages:
            self.bm25.index(corpus, show_progress=False)
        self.vocab = set(t for doc in corpus for t in doc)
        # every word of the corpus (folded), and the speakers' names and titles, for "is this
        # name mentioned anywhere?"
        self.words: set[str] = set()
        for p in passages:
            self.words.update(words(fold(f"{p.speaker} {p.question_speaker} {p.question} {p.text} {p.title}")))
        for sp in speakers:
            self.words.update(words(fold(f"{sp.name} {sp.tag} {sp.description} {' '.join(sp.aliases)}")))
        self.words.update([w[:-2] for w in self.words if w.endswith("'s")])  # "Berwick's" mentions Berwick
        self.speakers = _speaker_entries(speakers)
        self._by_word: dict[str, list[SpeakerEntry]] = {}  # a name or title word -> its speakers
        for e in self.speakers:
            for w in e.names | e.titles:
                self._by_word.setdefault(w, []).append(e)
        # filter key -> value -> the rows that have it, so a filter costs its matches, not the store
        self._rows: dict[str, dict[str, np.ndarray]] = {}
        for key in FILTER_KEYS:
            groups: dict[str, list[int]] = {}
            for i, p in enumerate(passages):
                groups.setdefault(getattr(p, key), []).append(i)
            self._rows[key] = {v: np.asarray(ix, dtype=np.int64) for v, ix in groups.items()}

    def __len__(self) -> int:
        return len(self.passages)

    def similarities(self, q_vec: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Cosine of the question with the stored vectors (of ``rows``, or all), as float32;
        in blocks, so a float16 matrix is never copied whole."""
        assert self.vectors is not None
        q = np.asarray(q_vec, dtype=np.float32)
        n = len(self.vectors) if rows is None else len(rows)
        out = np.empty(n, dtype=np.float32)
        for at in range(0, n, 8192):
            block = self.vectors[at : at + 8192] if rows is None else self.vectors[rows[at : at + 8192]]
            out[at : at + len(block)] = block.astype(np.float32) @ q
        return out

    def neighbours(self, i: int, radius: int = 2, with_distance: bool = False) -> list:
        """Passages of the same transcript within ``radius`` positions (passages are kept in
        transcript order)."""
        out = []
        t = self.passages[i].transcript
        for d in range(1, radius + 1):
            for j in (i - d, i + d):
                if 0 <= j < len(self.passages) and self.passages[j].transcript == t:
                    out.append((d, j) if with_distance else j)
        return out

    # ------------------------------------------------------------------ speakers

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

    def residual_topic(self, question: str, query: "Query") -> list[str]:
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

    def neutralize(self, question: str, query: "Query") -> str:
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
        candidates = {id(e): e for _, _, w in toks for e in self._by_word.get(w, ())}
        refs: list[_Reference] = []
        for e in candidates.values():
            i = 0
            while i < len(toks):
                w = toks[i][2]
                if w in e.names:
                    j = i
                    while j + 1 < len(toks) and toks[j + 1][2] in e.names:
                        j += 1
                    refs.append(_Reference(toks[i][0], toks[j][1], e.name, j - i + 1, True, tuple(t[2] for t in toks[i : j + 1])))
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

    # ------------------------------------------------------------------ filtering

    def rows(self, filters: dict[str, Any]) -> np.ndarray | None:
        """Sorted indices of the passages passing the explicit filters (None = all)."""
        out = None
        for key, value in filters.items():
            if value in (None, "", []):
                continue
            if key not in self._rows:
                raise ValueError(f"unknown filter {key!r}; valid: {', '.join(FILTER_KEYS)}")
            values = self._filter_values(key, value)
            groups = self._rows[key]
            if key == "date":  # "2024" matches every date in 2024
                keys = [d for d in groups if any(str(d).startswith(str(v)) for v in values)]
            else:
                keys = [v for v in values if v in groups]
            cur = np.unique(np.concatenate([groups[k] for k in keys])) if keys else np.zeros(0, dtype=np.int64)
            out = cur if out is None else np.intersect1d(out, cur, assume_unique=True)
        return out

    def _filter_values(self, key: str, value: Any) -> list:
        """A filter's values as a list; a speaker filter names the speakers it matches (a partial
        name or a title may match several), or itself when it matches none."""
        values = list(value) if isinstance(value, (list, tuple, set)) else [value]
        if key != "speaker":
            return values
        allowed: set[str] = set()
        for v in values:
            allowed.update(self.match_speakers(str(v)) or [str(v)])
        return sorted(allowed)

    def mask(self, filters: dict[str, Any]) -> np.ndarray | None:
        """Boolean mask of passages passing the explicit filters (None = all)."""
        rows = self.rows(filters)
        if rows is None:
            return None
        m = np.zeros(len(self.passages), dtype=bool)
        m[rows] = True
        return m

    def chroma_where(self, filters: dict[str, Any]) -> dict | None:
        clauses = []
        for key, value in filters.items():
            if value in (None, "", []) or key == "date":
                continue
            values = self._filter_values(key, value)
            clauses.append({key: {"$in": values}} if len(values) > 1 else {key: values[0]})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}


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


def _speaker_entries(speakers: list[Speaker]) -> list[SpeakerEntry]:
    """Name tokens come from the speaker's name and tag, and from aliases that are names
    ("Hon. Anthony Rota"); other aliases and descriptions ("Minister of Finance") are titles."""
    merged: dict[str, SpeakerEntry] = {}
    for s in speakers:
        e = merged.setdefault(s.name, SpeakerEntry(s.name, s.role, set(), set(), []))
        name_labels = [s.name, s.tag] + [a for a in s.aliases if _NAME_PREFIX.match(a)]
        for label in [s.name, s.tag, *s.aliases]:
            f = fold(label)
            if f and f not in e.phrases:
                e.phrases.append(f)
        for label in name_labels:
            for w in words(fold(label)):
                if w not in _HONORIFICS and len(w) >= 2 and w not in STOPWORDS:
                    e.names.add(w)
        for label in [s.description, *s.aliases, s.tag, s.name]:
            e.titles.update(w for w in words(fold(label)) if w not in STOPWORDS and len(w) > 2)
            for n, part in enumerate(_TITLE_PARTS.split(fold(label))):
                # the head noun ends the phrase before its complement: "minister" of "deputy prime
                # minister", of "minister of finance", of "cabinet secretary for education"; the
                # parts of a complement's list have none ("science" in "Minister of Innovation,
                # Science and Industry")
                head_part, *complement = _COMPLEMENT.split(part, maxsplit=1)
                before = [w for w in words(head_part) if w not in STOPWORDS and w not in _HONORIFICS and len(w) > 2]
                if before and (n == 0 or complement):
                    e.heads.add(before[-1])
                phrase = " ".join(w for w in words(part) if w not in STOPWORDS and len(w) > 2)
                if phrase:
                    e.title_phrases.add(phrase)
    # a "name" shared by many speakers ("chair" in "The Chair" and "The Acting Chair") is a title
    counts: dict[str, int] = {}
    for e in merged.values():
        for w in e.names:
            counts[w] = counts.get(w, 0) + 1
    for e in merged.values():
        e.names = {w for w in e.names if counts[w] <= 2}
    return list(merged.values())


# ---------------------------------------------------------------------------- search


@dataclass
class Scored:
    index: int
    score: float
    dense: float = 0.0
    lexical: float = 0.0


def hybrid_search(
    index: Index,
    dense_hits: list[tuple[int, float]],
    query: Query,
    q_vec: np.ndarray,
    k: int,
    *,
    fusion: str = "convex",
    dense_weight: float = 0.3,
    rrf_k: int = 60,
    context: float = 0.0,
    speaker_boost: float = 0.2,
    pool: int = 100,
) -> list[Scored]:
    """Fuse dense hits (candidates from Chroma) with BM25, boost the speakers the question
    names, then pick k diverse passages.

    ``fusion``: "convex" (weighted sum of cosine and max-normalised BM25; dense scores of
    lexical-only candidates come from the stored vectors) or "rrf" (reciprocal rank fusion).
    ``context`` > 0 adds that share of the neighbouring passages' scores (the same exchange)."""
    if fusion not in FUSIONS:
        raise ValueError(f"unknown fusion {fusion!r}; valid: {', '.join(FUSIONS)}")
    n = len(index)
    if n == 0:
        return []
    allowed = index.mask(query.filters)
    q_tokens = [t for t in query_tokens(index.lexical_text(query.text, query.speakers)) if t in index.vocab]
    lex = np.zeros(n, dtype=np.float32)
    if q_tokens:
        lex = np.asarray(index.bm25.get_scores(q_tokens), dtype=np.float32)
    if allowed is not None:
        lex = np.where(allowed, lex, 0.0)
    d_cand = {}
    for i, cos in dense_hits:
        if allowed is None or allowed[i]:
            d_cand[i] = max(cos, d_cand.get(i, -1.0))
    d_idx = sorted(d_cand, key=lambda i: -d_cand[i])[:pool]
    l_idx = [int(i) for i in top_indices(lex, pool) if lex[i] > 0]
    candidates = set(d_idx) | set(l_idx)
    if context > 0:
        candidates |= {j for i in list(candidates) for j in index.neighbours(i)}
    cand = np.array(sorted(candidates), dtype=np.int64)
    if cand.size == 0:
        return []
    dense = index.similarities(q_vec, cand) if index.vectors is not None else np.array([d_cand.get(int(i), 0.0) for i in cand])
    lex_max = float(lex.max()) if lex.max() > 0 else 1.0
    lexn = lex[cand] / lex_max
    if fusion == "convex":
        fused = dense_weight * dense + (1 - dense_weight) * lexn
    else:
        fused = np.zeros(cand.size)
        d_rank = {i: r for r, i in enumerate(d_idx)}
        l_rank = {i: r for r, i in enumerate(l_idx)}
        for j, i in enumerate(cand):
            if i in d_rank:
                fused[j] += dense_weight / (rrf_k + d_rank[i] + 1)
            if i in l_rank:
                fused[j] += (1 - dense_weight) / (rrf_k + l_rank[i] + 1)
    if context > 0:
        pos = {int(i): j for j, i in enumerate(cand)}
        base = fused.copy()
        for j, i in enumerate(cand):
            for dist, nb in index.neighbours(int(i), with_distance=True):
                if nb in pos:
                    fused[j] += context / dist * base[pos[nb]]
    # The question names a speaker (or "the reader", "the interviewer"): theirs come first.
    passages = index.passages
    prefer = np.array([passages[i].speaker in query.speakers or passages[i].kind in query.kinds
                       or passages[i].role in query.roles for i in cand], dtype=bool)
    ok = np.ones(cand.size, dtype=bool) if allowed is None else allowed[cand]
    scored = [
        Scored(int(i), float(fused[j] + (speaker_boost if prefer[j] else 0.0)), float(dense[j]), float(lexn[j]))
        for j, i in enumerate(cand)
        if ok[j]
    ]
    scored.sort(key=lambda x: -x.score)
    return diversify(index, scored, k)


FUSIONS = ("convex", "rrf")


def top_indices(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` highest scores, highest first (a partial sort: the store may be large)."""
    if n >= scores.size:
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, n - 1)[:n]
    return part[np.argsort(-scores[part], kind="stable")]


def diversify(index: Index, scored: list[Scored], k: int, per_answer: int = 2) -> list[Scored]:
    """At most ``per_answer`` parts of one answer in the top k; the rest follow in order."""
    top: list[Scored] = []
    rest: list[Scored] = []
    seen: dict[str, int] = {}
    for s in scored:
        base = index.base_of[s.index]
        if len(top) < k and seen.get(base, 0) < per_answer:
            top.append(s)
            seen[base] = seen.get(base, 0) + 1
        else:
            rest.append(s)
    return top + rest


def to_retrieved(index: Index, scored: list[Scored], k: int) -> list[Retrieved]:
    return [Retrieved(index.passages[s.index], s.score, rank=r + 1) for r, s in enumerate(scored[:k])]
