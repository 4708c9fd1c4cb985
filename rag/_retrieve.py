"""Hybrid, interview-aware retrieval: dense (Chroma) + BM25, fused; speaker references in the
question rank that speaker's passages first; filters; diversity across answers."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ._rank import FEATURES, Candidates, length_features, reciprocal_ranks, transcript_feature
from ._query import _QUERY_NOISE, Corpus, QueryPlan
from ._records import Passage, Retrieved, Speaker
from ._text import STOPWORDS, fold, words

_STEMMER = None


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


FILTER_KEYS = ("speaker", "transcript", "role", "kind", "date")

K1, B = 1.2, 0.75  # bm25s's BM25 parameters (its "lucene" method, the default)


def full_tokens(p: Passage) -> list[str]:
    """What the main BM25 index reads of a passage: who spoke and who asked, the question, the
    answer (stemmed)."""
    return stem_tokens(f"{p.speaker}\n{p.question_speaker}\n{p.question}\n{p.text}") or ["_empty_"]


def answer_tokens(p: Passage) -> list[str]:
    """What the answer-only BM25 index reads: the answer's words."""
    return stem_tokens(p.text) or ["_empty_"]


class Lexicon:
    """The term counts a BM25 index is made from: one entry per passage (``doc``) and distinct
    term (``term``, a column of ``terms``) with how often the term occurs there (``tf``).

    Kept beside the index in the query snapshot (rag/_snapshot.py), so that adding a transcript
    to a store recomputes the BM25 matrix from stored counts (numpy, a few passes over the
    entries) instead of stemming every passage again; ``bm25()`` gives exactly the scores of
    ``bm25s.BM25(k1=1.2, b=0.75).index(tokens)`` (tests/test_snapshot.py checks it)."""

    def __init__(self, doc: np.ndarray, term: np.ndarray, tf: np.ndarray, n_docs: int, terms: list[str]) -> None:
        self.doc, self.term, self.tf, self.n_docs, self.terms = doc, term, tf, n_docs, terms

    @classmethod
    def of(cls, docs: Sequence[Sequence[str]], terms: list[str] | None = None, at: np.ndarray | None = None,
           n_docs: int | None = None) -> "Lexicon":
        """The counts of tokenized passages ``docs``, numbered ``at`` (by default 0, 1, ...) of
        ``n_docs``; new terms are added to ``terms`` (a list shared with other lexicons, or a new
        one)."""
        terms = [] if terms is None else terms
        col = {t: i for i, t in enumerate(terms)}
        flat = [col.setdefault(t, len(col)) for d in docs for t in d]
        terms.extend(list(col)[len(terms):])
        sizes = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
        at = np.arange(len(docs), dtype=np.int64) if at is None else np.asarray(at, dtype=np.int64)
        v = max(len(terms), 1)
        key, tf = np.unique(np.repeat(at, sizes) * v + np.asarray(flat, dtype=np.int64), return_counts=True)
        return cls(key // v, key % v, tf, len(docs) if n_docs is None else n_docs, terms)

    @classmethod
    def joined(cls, parts: Sequence["Lexicon"], n_docs: int) -> "Lexicon":
        """Lexicons over the same ``terms`` list and disjoint passages, as one."""
        return cls(np.concatenate([p.doc for p in parts]), np.concatenate([p.term for p in parts]),
                   np.concatenate([p.tf for p in parts]), n_docs, parts[0].terms)

    def bm25(self) -> tuple[Any, np.ndarray]:
        """The bm25s index of these counts, and each of its entries' term count (in the order of
        its matrix: by term, then passage). Terms no passage holds any more are left out."""
        import bm25s

        bm = bm25s.BM25(k1=K1, b=B)
        n = self.n_docs
        df = np.bincount(self.term, minlength=len(self.terms))
        kept = np.flatnonzero(df)
        column = np.full(len(self.terms), -1, dtype=np.int64)
        column[kept] = np.arange(len(kept))
        term = column[self.term]
        df = df[kept]
        doc_len = np.bincount(self.doc, weights=self.tf, minlength=n).astype(np.int64)
        if n:
            # as bm25s computes it (float64 arithmetic, float32 results), so the scores are the same
            # to the bit: idf by its "lucene" formula, the term-frequency part per passage length
            avg = doc_len.mean()
            idf_of = {int(d): math.log(1 + (n - int(d) + 0.5) / (int(d) + 0.5)) for d in np.unique(df)}
            idf = np.array([idf_of[int(d)] for d in df], dtype=np.float32)
            tf = self.tf.astype(np.float32).astype(np.float64)
            norm = K1 * ((1 - B) + B * doc_len.astype(np.float64) / avg)
            score = (idf[term].astype(np.float64) * (tf / (norm[self.doc] + tf))).astype(np.float32)
        else:
            score = np.zeros(0, dtype=np.float32)
        # (a stable sort: an update's entries are one long sorted run, the kept passages', and a
        # short one, which it merges in linear time)
        order = np.argsort(term * max(n, 1) + self.doc, kind="stable")
        indptr = np.zeros(len(kept) + 1, dtype=np.int64)
        np.cumsum(df, out=indptr[1:])
        bm.scores = {"data": score[order], "indices": self.doc[order].astype(np.int32), "indptr": indptr, "num_docs": n}
        bm.vocab_dict = {self.terms[t]: i for i, t in enumerate(kept)}
        bm.unique_token_ids_set = set(bm.vocab_dict.values())
        bm.nonoccurrence_array = None
        return bm, self.tf[order]

    @classmethod
    def from_bm25(cls, bm: Any, tf: np.ndarray, terms: list[str] | None = None) -> "Lexicon":
        """The counts a stored index was made from (its entries' term counts ``tf``); its terms
        are added to ``terms``."""
        terms = [] if terms is None else terms
        col = {t: i for i, t in enumerate(terms)}
        by_id = sorted(bm.vocab_dict.items(), key=lambda kv: kv[1])
        ids = np.array([col.setdefault(t, len(col)) for t, i in by_id if i < len(bm.scores["indptr"]) - 1], dtype=np.int64)
        terms.extend(list(col)[len(terms):])
        indptr = np.asarray(bm.scores["indptr"])
        term = np.repeat(ids, np.diff(indptr))
        return cls(np.asarray(bm.scores["indices"], dtype=np.int64), term, np.asarray(tf), int(bm.scores["num_docs"]), terms)

    def moved(self, to: np.ndarray, n_docs: int) -> "Lexicon":
        """The entries of the passages that stay, renumbered (``to[old] = new``, -1: left out)."""
        new = to[self.doc]
        keep = new >= 0
        return Lexicon(new[keep], self.term[keep], self.tf[keep], n_docs, self.terms)


def _codes(values: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """A column of values as (distinct values, each row's code into them)."""
    at: dict[str, int] = {}
    codes = np.fromiter((at.setdefault(v, len(at)) for v in values), dtype=np.int64, count=len(values))
    return list(at), codes


def filter_rows(columns: dict[str, tuple[list[str], np.ndarray]], role_of: dict[str, str]) -> dict[str, dict[str, np.ndarray]]:
    """Filter key -> value -> the rows that have it, so a filter costs its matches, not the
    store. A speaker's or role's rows include the passages where they ask: the interviewer's
    words are theirs, although stored as the question of someone else's answer. ``columns``:
    each of ``FILTER_KEYS`` and "question_speaker" as (values, codes); values in the order they
    first occur (a row's own value before its asker's)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    ask_values, ask = columns["question_speaker"]
    for key in FILTER_KEYS:
        values, own = columns[key]
        values = list(values)
        code = {v: i for i, v in enumerate(values)}
        rows = [np.arange(len(own), dtype=np.int64)]
        vals = [np.asarray(own, dtype=np.int64)]
        if key in ("speaker", "role"):
            # the asker's value for each asker, and whether it is added to a row (not when it is
            # the row's own: the same person, or an asker of the same role)
            if key == "speaker":
                extra = [code.setdefault(a, len(code)) if a else -1 for a in ask_values]
            else:
                extra = [code.setdefault(role_of[a], len(code)) if a and a in role_of else -1 for a in ask_values]
            values = list(code)
            add = np.asarray(extra, dtype=np.int64)[ask] if len(ask) else np.zeros(0, dtype=np.int64)
            mine = np.asarray(own, dtype=np.int64)
            where = np.flatnonzero((add >= 0) & (add != mine))
            rows.append(where)
            vals.append(add[where])
        r, v = np.concatenate(rows), np.concatenate(vals)
        sub = np.concatenate([np.zeros(len(rows[0]), dtype=np.int64)] + [np.ones(len(x), dtype=np.int64) for x in rows[1:]])
        order = np.lexsort((r, v))  # by value, then row
        r, v, first = r[order], v[order], (r * 2 + sub)[order]
        bounds = np.flatnonzero(np.diff(v)) + 1
        starts = np.concatenate([[0], bounds]) if len(v) else np.zeros(0, dtype=np.int64)
        groups = np.split(r, bounds) if len(v) else []
        # values by where they first occur (a row's own value first)
        firsts = np.minimum.reduceat(first, starts) if len(v) else np.zeros(0, dtype=np.int64)
        out[key] = {values[int(v[s])]: groups[g] for g, s in sorted(enumerate(starts), key=lambda gs: firsts[gs[0]])}
    return out



class Index:
    """The store's current passages in memory, with a BM25 index and the speakers."""

    def __init__(self, passages: list[Passage], speakers: list[Speaker], versions: dict[str, str], fingerprint: str,
                 vectors: np.ndarray | None = None) -> None:
        self.passages = passages
        self.vectors = vectors
        self.fingerprint = fingerprint
        self.versions = versions
        self.by_chunk = {p.chunk_id: i for i, p in enumerate(passages)}
        self.base_of = [_base(p.chunk_id) for p in passages]
        # who spoke and who asked are searchable with what was said and asked; the answer's words
        # alone: a passage that answers in the question's words, not one that repeats them in
        # its question
        self.bm25, self.bm25_tf = Lexicon.of([full_tokens(p) for p in passages]).bm25()
        self.bm25_answer, self.bm25_answer_tf = Lexicon.of([answer_tokens(p) for p in passages]).bm25()
        self.n_words = [len(p.text.split()) for p in passages]
        self.vocab = set(self.bm25.vocab_dict)
        self.corpus = Corpus(passages, speakers)  # its words and speakers, for planning questions
        self.role_of = role_of = {sp.name: sp.role for sp in speakers if sp.role}  # a speaker's role by name
        self._rows = filter_rows({k: _codes([getattr(p, k) for p in passages]) for k in (*FILTER_KEYS, "question_speaker")},
                                 role_of)

    @classmethod
    def restored(cls, passages: Sequence[Passage], speakers: list[Speaker], versions: dict[str, str], fingerprint: str,
                 vectors: np.ndarray | None, *, bm25: Any, bm25_answer: Any, n_words: Sequence[int], vocab: set[str],
                 corpus: Corpus, rows: dict[str, dict[str, np.ndarray]], chunk_ids: Sequence[str]) -> "Index":
        """An Index from what ``__init__`` computed, read back (rag/_snapshot.py) instead of
        computed again."""
        self = cls.__new__(cls)
        self.passages = passages
        self.vectors = vectors
        self.fingerprint = fingerprint
        self.versions = versions
        self.by_chunk = {c: i for i, c in enumerate(chunk_ids)}
        self.base_of = _BaseOf(chunk_ids)
        if bm25 is None:  # no passages
            import bm25s

            bm25, bm25_answer = bm25s.BM25(k1=1.2, b=0.75), bm25s.BM25(k1=1.2, b=0.75)
        self.bm25, self.bm25_answer = bm25, bm25_answer
        self.n_words = n_words
        self.vocab = vocab
        self.corpus = corpus
        self.role_of = {sp.name: sp.role for sp in speakers if sp.role}
        self._rows = rows
        return self

    def __len__(self) -> int:
        return len(self.passages)

    def filter_values(self, key: str) -> list[str]:
        """The values a filter can match (not empty): for "speaker", everyone who answers or
        asks; for "role", the roles of those who answer and of those who ask."""
        return [v for v in self._rows[key] if v]

    def transcript_rows(self, transcript: str) -> np.ndarray:
        """The rows of one transcript's passages, in order."""
        return self._rows["transcript"].get(transcript, np.zeros(0, dtype=np.int64))

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
        return self.corpus.match_speakers(name)

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


def _base(chunk_id: str) -> str:
    """The answer a passage is part of: its chunk id without the part (``/p2``)."""
    return re.sub(r"/p\d+$", "", chunk_id)


class _BaseOf:
    """``Index.base_of`` of a restored index, computed per passage when asked."""

    def __init__(self, chunk_ids: Sequence[str]) -> None:
        self._ids = chunk_ids

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, i: int) -> str:
        return _base(self._ids[i])


# ---------------------------------------------------------------------------- search


@dataclass
class Scored:
    index: int
    score: float


def candidates(index: Index, dense_hits: list[tuple[int, float]], query: QueryPlan, q_vec: np.ndarray, *,
               pool: int = 50, rr_k: float = 10.0, short_words: int = 10, transcript_top: int = 3) -> Candidates:
    """The question's candidate passages (the ``pool`` best by meaning, by dense search, and by
    words, by BM25, among those passing the filters) and their feature rows (``_rank.FEATURES``)."""
    n = len(index)
    allowed = index.mask(query.filters)
    q_tokens = [t for t in query_tokens(query.lexical_text) if t in index.vocab]
    lex = np.zeros(n, dtype=np.float32)
    lex_a = np.zeros(n, dtype=np.float32)
    if q_tokens and n:
        lex = np.asarray(index.bm25.get_scores(q_tokens), dtype=np.float32)
        lex_a = np.asarray(index.bm25_answer.get_scores(q_tokens), dtype=np.float32)
    if allowed is not None:
        lex = np.where(allowed, lex, 0.0)
        lex_a = np.where(allowed, lex_a, 0.0)
    d_cand: dict[int, float] = {}
    for i, cos in dense_hits:
        if allowed is None or allowed[i]:
            d_cand[i] = max(cos, d_cand.get(i, -1.0))
    d_idx = sorted(d_cand, key=lambda i: -d_cand[i])[:pool]
    l_idx = [int(i) for i in top_indices(lex, pool) if lex[i] > 0]
    rows = np.array(sorted(set(d_idx) | set(l_idx)), dtype=np.int64)
    if rows.size == 0:
        return Candidates(rows, np.zeros((0, len(FEATURES)), dtype=np.float32))
    if index.vectors is not None:
        dense = index.similarities(q_vec, rows)
    else:
        dense = np.array([d_cand.get(int(i), 0.0) for i in rows], dtype=np.float32)
    lex_max = float(lex.max()) or 1.0
    lexa_max = float(lex_a.max()) or 1.0
    lexn = lex[rows] / lex_max
    ps = index.passages
    speakers, roles, kinds = set(query.speakers), set(query.roles), set(query.kinds)
    n_words = np.array([index.n_words[i] for i in rows], dtype=np.float32)
    short, log_words = length_features(n_words, short_words)
    cols = {
        "dense": dense,
        "lexical": lexn,
        "lexical_answer": lex_a[rows] / lexa_max,
        "lexical_rr": reciprocal_ranks(l_idx, rows, rr_k),
        "speaker": np.array([ps[i].speaker in speakers for i in rows], dtype=np.float32),
        "asker": np.array([bool(ps[i].question_speaker) and ps[i].question_speaker in speakers for i in rows], dtype=np.float32),
        "role_kind": np.array([ps[i].role in roles or ps[i].kind in kinds for i in rows], dtype=np.float32),
        "transcript": transcript_feature([ps[i].transcript for i in rows], dense + lexn, transcript_top),
        "short": short,
        "log_words": log_words,
        "introduction": np.array([ps[i].kind == "introduction" for i in rows], dtype=np.float32),
        "comment": np.array([ps[i].kind == "comment" for i in rows], dtype=np.float32),
    }
    X = np.stack([cols[f] for f in FEATURES], axis=1).astype(np.float32)
    return Candidates(rows, X)


def rank(index: Index, cands: Candidates, w: np.ndarray, k: int, per_answer: int = 2) -> list[Scored]:
    """The candidates by their weighted features, at most ``per_answer`` parts of one answer in
    the top k."""
    s = cands.scores(w)
    order = np.argsort(-s, kind="stable")
    scored = [Scored(int(cands.rows[j]), float(s[j])) for j in order]
    return diversify(index, scored, k, per_answer)





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
