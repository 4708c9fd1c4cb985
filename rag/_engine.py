"""The one public entry point for asking: ``Engine(settings).ask(question, history=..., filters=...)``.

The UI, the CLI and the evaluation runner all go through it. It loads the model and the store
once, keeps an in-memory view of the store's passages (with the BM25 index) and reloads that view
when another process changes the store.
"""

from __future__ import annotations

import atexit
import dataclasses
import math
import threading
import time
import weakref
from collections import OrderedDict
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from . import _answer, _derived, _snapshot
from ._decide import decide
from ._embed import Embedder
from ._errors import StoreMissingError, StoreUnavailableError
from ._records import Answer, Citation, Passage, Retrieved, Speaker
from ._rank import Candidates, weight_vector
from ._query import HistoryTurn, QueryPlan, plan
from ._retrieve import Index, candidates, rank, to_retrieved, top_indices
from ._settings import Settings
from ._store import Store, TranscriptInfo, collection_names

REFUSAL = _answer.REFUSAL
SENTENCES_NOW = 3000  # warm() embeds every sentence of a corpus up to this many passages before returning
SENTENCES_BACKGROUND = 20000  # ... and in the background up to this many (float32: ~15 MB per 1,000 passages)


class Engine:
    _SENTENCE_BATCH = 16  # a question's sentences: short texts of mixed length, smaller batches pad less

    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        store: Store | None = None,
        chat_model: Any = None,
        refresh_seconds: float = 1.0,
    ) -> None:
        self.settings = settings
        self.embedder = embedder or Embedder(settings.model)
        self._store = store
        self._chat_model = chat_model
        self._index: Index | None = None
        self._lock = threading.RLock()
        self._encode_lock = threading.Lock()
        self._checked = 0.0
        self.refresh_seconds = refresh_seconds
        self._sent_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._sent_cache_max = 20000
        self._cache_lock = threading.Lock()
        self._idf: dict[str, float] = {}
        self._fill_limits: tuple[int, int] | None = None  # set by warm()
        self._fill_done = threading.Event()
        self._fill_done.set()
        self._asking = 0  # questions in progress (the background sentence fill waits for them)
        self._asking_lock = threading.Lock()

    # ------------------------------------------------------------------ store view

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.settings)
        return self._store

    def index(self) -> Index:
        """The current in-memory view; reloaded when the store's manifest changed."""
        now = time.monotonic()
        with self._lock:
            if self._index is not None and now - self._checked < self.refresh_seconds:
                return self._index
            fp = self.store.fingerprint()
            self._checked = now
            if self._index is None or fp != self._index.fingerprint:
                try:
                    self._load(fp)
                except StoreUnavailableError:
                    raise
                except Exception:
                    # another process is writing (embedded Chroma is not built for that): keep
                    # the view we have and look again at the next check
                    if self._index is None:
                        raise
            assert self._index is not None
            return self._index

    def _load(self, fingerprint: str) -> None:
        if self._index is not None:
            self.store.reopen()  # the store changed, perhaps by another process
        view = load_view(self.store, self.settings, fingerprint)
        self._index = view.index
        self._manifest = view.manifest
        self._speaker_lookup = _answer.manifest_speakers(view.manifest)  # (once per view, not per answer)
        with self._cache_lock:
            self._sent_cache.clear()
        self._idf = view.idf
        del view
        _release_freed_memory()
        if self._fill_limits:
            self._prefill(self._index, wait=False)  # a question is waiting for this reload

    def transcripts(self) -> dict[str, TranscriptInfo]:
        self.index()
        return dict(self._manifest)

    def source_text(self, transcript: str) -> str:
        return self.store.source_text(transcript)

    def warm(self, sentences_up_to: int = SENTENCES_NOW, background_up_to: int = SENTENCES_BACKGROUND) -> None:
        """Load the model and the store view now rather than on the first question.

        Answers quote sentences, scored with their own vectors. A store ingested since those are
        stored with the passages (rag/_derived.py) has them all: they are read as questions need
        them, and nothing is embedded here or later. Only for a store without them, for a corpus
        of up to ``sentences_up_to`` passages every sentence is embedded here, before returning;
        up to ``background_up_to`` passages, in a background thread that gives way to questions
        (and starts again after the store changes); larger corpora embed sentences as questions
        need them (cached)."""
        self._fill_limits = (sentences_up_to, background_up_to)
        index = self.index()
        self._encode(["warm up"])
        self._prefill(index)

    def _prefill(self, index: Index, wait: bool = True) -> None:
        assert self._fill_limits is not None
        now, background = self._fill_limits
        n = len(index)
        if not n or n > background or self.store.has_sentences:
            # (a store written since sentence vectors are stored with the passages has them all:
            # nothing to embed, at any size)
            self._fill_done.set()
            return
        with self._cache_lock:
            self._sent_cache_max = max(self._sent_cache_max, len(_answer.FIELDS) * n + 1000)
        if n <= now and wait:
            self._fill_sentences(index)
        else:
            self._fill_done.clear()
            threading.Thread(target=self._fill_sentences, args=(index, True), name="rag-sentences", daemon=True).start()

    def _fill_sentences(self, index: Index, background: bool = False) -> None:
        try:
            if background or threading.current_thread() is not threading.main_thread():
                # a fill outside the main thread (in the background, or a caller's warm-up thread)
                # is waited for at exit: torch in a thread during finalization aborts the process
                _FILLING.add(threading.current_thread())
            for i in range(0, len(index), 64):
                if _EXITING.is_set() or (background and self._index is not index):
                    return  # the process ends, or the store changed (the new view has its own fill)
                self._sentence_vectors([(p, f) for f in _answer.FIELDS for p in index.passages[i : i + 64]],
                                       background=background)
                if background:
                    _release_freed_memory()  # the batches' buffers, freed, would otherwise pile up
        except Exception:  # a background fill must never break the engine; questions embed on demand
            if not background:
                raise
        finally:
            if self._index is index:
                self._fill_done.set()

    def sentences_ready(self, timeout: float | None = None) -> bool:
        """Wait (up to ``timeout`` seconds) for the sentence vectors warm() set out to embed."""
        return self._fill_done.wait(timeout)

    # ------------------------------------------------------------------ embedding

    def _encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        with self._encode_lock:  # the tokenizer is not safe to share between threads
            return self.embedder.encode(list(texts), batch_size=batch_size or self.settings.batch_size)

    def _sentence_vectors(self, items: Sequence[tuple[Passage, str]], background: bool = False) -> list[np.ndarray]:
        """Vectors of the quotable sentences of each (passage, field): the passage's answer
        ("text") or its question ("question"); cached. ``background``: encode in short pieces
        (sorted by length, so each batch pads little), each waiting until no question is being
        answered, so that questions never queue behind the fill for long."""
        keys = [f"{p.chunk_id}#{field}" for p, field in items]
        with self._cache_lock:
            cached = {k: self._sent_cache.get(k) for k in keys}
        missing = list({k: (p, field) for k, (p, field) in zip(keys, items) if cached[k] is None}.items())
        if missing:
            missing = self._stored_sentences(missing, cached)
        if missing:
            spans = [_answer.passage_sentences(p, field) for _, (p, field) in missing]
            flat = [getattr(p, field)[a:b] for (_, (p, field)), sp in zip(missing, spans) for a, b in sp]
            if not flat:
                vecs = np.zeros((0, 1), dtype=np.float32)
            elif background:
                vecs = np.empty((len(flat), self.embedder.dimension), dtype=np.float32)
                order = sorted(range(len(flat)), key=lambda i: len(flat[i]))
                for at in range(0, len(order), 32):
                    while self._asking and not _EXITING.is_set():  # questions first
                        time.sleep(0.005)
                    if _EXITING.is_set():
                        raise _Stopped
                    piece = order[at : at + 32]
                    vecs[piece] = self._encode([flat[i] for i in piece], 32)
            else:
                vecs = self._encode(flat, self._SENTENCE_BATCH)
            at = 0
            with self._cache_lock:
                for (k, _), sp in zip(missing, spans):
                    cached[k] = self._sent_cache[k] = vecs[at : at + len(sp)]
                    at += len(sp)
                while len(self._sent_cache) > self._sent_cache_max:
                    self._sent_cache.popitem(last=False)
        return [cached[k] for k in keys]

    def _stored_sentences(self, missing: list[tuple[str, tuple[Passage, str]]],
                          cached: dict[str, np.ndarray | None]) -> list[tuple[str, tuple[Passage, str]]]:
        """Fill ``cached`` from the sentence vectors stored at ingest (``rag._derived``); returns
        what the store does not have (those are embedded)."""
        index = self._index
        if index is None or not self.store.has_sentences:
            return missing
        ids = {}
        for _, (p, _f) in missing:
            version = index.versions.get(p.transcript)
            if version:
                ids[p.chunk_id] = f"{p.chunk_id}@{version}"
        try:
            stored = self.store.sentence_vectors(list(dict.fromkeys(ids.values())))
        except StoreUnavailableError:
            raise
        except Exception:  # embedded Chroma read while another process writes: embed instead
            return missing
        left = []
        found: dict[str, np.ndarray] = {}
        for k, (p, field) in missing:
            matrix = stored.get(ids.get(p.chunk_id, ""))
            parts = _derived.split_fields(p, matrix) if matrix is not None else None
            if parts is None:
                left.append((k, (p, field)))
            else:
                cached[k] = found[k] = parts[field]
        if found:
            with self._cache_lock:
                self._sent_cache.update(found)
                while len(self._sent_cache) > self._sent_cache_max:
                    self._sent_cache.popitem(last=False)
        return left

    # ------------------------------------------------------------------ asking

    def retrieve(self, question: str, *, filters: dict[str, Any] | None = None, k: int | None = None,
                 history: Sequence[Answer] = (), timings: dict[str, float] | None = None) -> tuple[QueryPlan, np.ndarray, list[Retrieved]]:
        timings = {} if timings is None else timings
        k = k or self.settings.k
        index, query, q_vec, cands = self.candidates(question, filters=filters, history=history, timings=timings)
        t3 = time.perf_counter()
        r = self.settings.ranking
        scored = rank(index, cands, weight_vector(r.weights), k, r.per_answer)
        timings["fuse_ms"] = (time.perf_counter() - t3) * 1000
        retrieved = to_retrieved(index, scored, max(k, 10))
        return query, q_vec, retrieved

    def candidates(self, question: str, *, filters: dict[str, Any] | None = None, history: Sequence[Answer] = (),
                   timings: dict[str, float] | None = None) -> tuple[Index, QueryPlan, np.ndarray, Candidates]:
        """The question read against the store, and its candidate passages with their ranking
        features (what `rag fit` learns the weights from)."""
        timings = {} if timings is None else timings
        r = self.settings.ranking
        t0 = time.perf_counter()
        index = self.index()
        if len(index) == 0:
            raise StoreMissingError(f"the store at {self.settings.describe_store()} has no passages")
        turns = [_history_turn(a) for a in history]
        p = self.settings.planning
        query = plan(question, turns, index.corpus, filters, self._rarity, strip_request=p.strip_request,
                     title_neutral=p.title_neutral, scope=p.scope, overview=p.overview,
                     said_points=self.settings.answer.said_points, transcript_words=p.transcript_words)
        if query.followup and (self.settings.llm or self._chat_model is not None):
            from ._llm import rewrite_followup

            rewritten = rewrite_followup(self._chat(), question, [t.question for t in turns])
            if rewritten:
                query = plan(rewritten, [], index.corpus, query.filters, self._rarity, strip_request=p.strip_request,
                             title_neutral=p.title_neutral, scope=p.scope, overview=p.overview, transcript_words=p.transcript_words)
                query.question, query.followup = question, True
        timings["load_ms"] = (time.perf_counter() - t0) * 1000
        t1 = time.perf_counter()
        q_vec = self._encode([query.embed_text])[0]
        timings["embed_ms"] = (time.perf_counter() - t1) * 1000
        t2 = time.perf_counter()
        hits = self._dense(index, q_vec, r.pool, query.filters)
        timings["dense_ms"] = (time.perf_counter() - t2) * 1000
        cands = candidates(index, hits, query, q_vec, pool=r.pool, rr_k=r.rr_k, short_words=r.short_words,
                           transcript_top=r.transcript_top)
        return index, query, q_vec, cands

    def _dense(self, index: Index, q_vec: np.ndarray, n: int, filters: dict[str, Any]) -> list[tuple[int, float]]:
        where = index.chroma_where(filters)
        small = not self.settings.chroma_url and len(index) <= self.settings.ranking.exact_max
        if index.vectors is not None and (where is not None or small):
            # Filtered (a speaker, a transcript): the matching passages' vectors in memory, searched
            # exactly. Chroma filters its HNSW search through its metadata store: 23 ms against
            # 1.2 ms unfiltered, measured at 10,000 passages; and approximate. An embedded store of
            # up to ranking.exact_max passages is searched exactly too: a few milliseconds, and a
            # fresh process does not load Chroma's index for its first question (a server has
            # its index loaded already, and is asked, so that a server gone is noticed).
            return _exact_dense(index, q_vec, n, filters)
        out = []
        try:
            # no more than the view holds (Store.query does not count the collection per question)
            found = self.store.query(q_vec, min(n, len(index)), where)
        except StoreUnavailableError:
            raise
        except Exception:
            # Embedded Chroma can fail while another process writes to it: search the vectors of
            # the in-memory view (the same passages, exactly) instead.
            return _exact_dense(index, q_vec, n, filters)
        for cid, sim in found:
            chunk, _, version = cid.rpartition("@")
            i = index.by_chunk.get(chunk)
            if i is not None and index.versions.get(index.passages[i].transcript) == version:
                out.append((i, sim))
        return out

    def ask(
        self,
        question: str,
        *,
        history: Sequence[Answer] = (),
        filters: dict[str, Any] | None = None,
        k: int | None = None,
        llm: bool | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> Answer:
        """Answer a question with citations. ``history``: earlier answers of this conversation."""
        with self._asking_lock:
            self._asking += 1
        try:
            return self._ask(question, history=history, filters=filters, k=k, llm=llm, on_token=on_token)
        finally:
            with self._asking_lock:
                self._asking -= 1

    def _ask(self, question: str, *, history: Sequence[Answer], filters: dict[str, Any] | None, k: int | None,
             llm: bool | None, on_token: Callable[[str], None] | None) -> Answer:
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        k = k or self.settings.k
        question = (question or "").strip()
        if not question:
            return Answer(question, REFUSAL, [], [], True, timings, notice="Ask a question.")
        # plan -> retrieve
        query, q_vec, retrieved = self.retrieve(question, filters=filters, k=k, history=history, timings=timings)
        t4 = time.perf_counter()
        top = retrieved[:k]
        # select
        evidence_vec = self._evidence_vec(query, q_vec)
        chosen, evidence = self._select(query, q_vec, top, evidence_vec)
        # decide
        abstained = decide(query, evidence, chosen, top, idf=self._idf, vocab=self.index().corpus.words,
                           settings=self.settings.refusal, threshold=self.settings.abstain_threshold)
        notice = premise = ""
        llm_on = llm if llm is not None else bool(self.settings.llm or self._chat_model)
        use_llm = llm_on and not abstained
        # (a question about a whole transcript is answered from it: neither is asked for)
        said_by_others = None if use_llm or query.overview else self._said_by_others(query, top, evidence_vec)
        who, who_cited = ("", []) if use_llm or query.overview or not query.who_is else self._who_is(query)
        overview = self._whole(query) if query.overview else None
        if overview is not None:
            # "What is this interview about?": the transcript's own parts say it. In LLM mode the
            # model writes it from those parts (the retrieved passages would show it only a few),
            # and the extractive overview stands when it fails or finds nothing to say
            text, citations, top = overview
            abstained = False
            if llm_on and citations:  # (whatever the refusal said of the retrieved passages)
                from ._llm import llm_answer

                llm_result = llm_answer(self._chat(), query.text, top, on_token=on_token)
                if llm_result.error:
                    notice = f"The language model failed ({llm_result.error}); showing the extractive answer."
                elif not llm_result.refused:
                    text, citations = llm_result.text, llm_result.citations
        elif query.overview:  # no transcript passes the filters
            text, citations, top, abstained = REFUSAL, [], [], True
        elif who:
            # "Who is Amar Shah?": the speaker lists say who they are (with what they say of
            # themselves when the lists do not); otherwise their own words (or others' about them)
            # are quoted beside only where they bear on it as an answer would
            text, citations = who, who_cited
            if who_cited:
                top = list({c.passage.chunk_id: Retrieved(c.passage, 1.0, rank=c.n) for c in who_cited}.values())
            elif evidence >= self.settings.abstain_threshold:
                quoted, citations = _answer.compose(top, chosen, speakers=self._speaker_lookup)
                text = f"{who}\n\n{quoted}" if citations else who
            abstained = False
        elif said_by_others is not None:
            text, citations = said_by_others
            abstained, premise = False, "speaker"
        elif abstained:
            text, citations = REFUSAL, []
        else:
            text, citations = _answer.compose(top, chosen, speakers=self._speaker_lookup)
            if not use_llm:
                found = " ".join(f"{r.passage.question} {r.passage.text}" for r in top)
                unsupported = _values_note(query.text, found, citations)
                missing = "" if unsupported or not citations else _answer.type_absent(query.answer_type, found)
                if unsupported:
                    text, premise = f"{unsupported} {text}", "value"
                elif missing:
                    text, premise = f"The passages found give {missing}; this is the nearest they come. {text}", "type"
            if use_llm:
                from ._llm import llm_answer

                llm_result = llm_answer(self._chat(), query.text, top, on_token=on_token)
                if llm_result.error:
                    notice = f"The language model failed ({llm_result.error}); showing the extractive answer."
                elif llm_result.refused:
                    text, citations, abstained = REFUSAL, [], True
                else:
                    text, citations = llm_result.text, llm_result.citations
        timings["answer_ms"] = (time.perf_counter() - t4) * 1000
        timings["total_ms"] = (time.perf_counter() - t0) * 1000
        return Answer(
            question=question,
            text=text,
            citations=citations,
            retrieved=top,
            abstained=abstained,
            timings_ms=timings,
            notice=notice,
            resolved_question=query.text,
            filters=dict(query.filters),
            evidence=evidence,
            speakers=list(query.speakers),
            premise=premise,
        )

    def _who_is(self, query: QueryPlan) -> tuple[str, list[Citation]]:
        """Who the people a "Who is X?" question names are, from the transcripts' speaker lists
        (name, tag, description, role, in which transcripts), and for one the lists do not describe,
        what they say of themselves (their post, training, work), quoted and cited; "" when it
        names nobody known."""
        index = self.index()
        everyone = index.corpus.people_in(query, limit=0)
        names = {sp.name for sp in everyone}
        if len(names) > 3 and not query.speakers and len(query.roles) == 1:
            # "Who are the interviewers?" across many hearings: name them rather than describe each
            return _answer.role_holders(query.roles[0], sorted(names)), []
        if len(names) > 3:
            return "", []
        scope = query.in_scope()
        people = [(sp, info.title or tid) for tid, info in self._manifest.items() if not scope or tid in scope
                  for sp in info.speakers if sp.name in names]
        for name in query.speakers:
            if name in names:
                continue
            # a reader who commented has no entry in the speaker lists: their comments say who they are
            for i in index.rows({"speaker": name}) if name else ():
                p = index.passages[int(i)]
                if p.speaker == name and p.kind == "comment" and (not scope or p.transcript in scope):
                    people.append((Speaker(name, name, "comment", f"a reader, {p.comment_date}".rstrip(", ")),  # type: ignore[arg-type]
                                   p.title or p.transcript))
        text, citations = _answer.who_is(people), []
        for name in dict.fromkeys(sp.name for sp, _ in people if not sp.description):
            rows = index.rows({"speaker": name, **({"transcript": sorted(scope)} if scope else {})})
            own = [index.passages[int(i)] for i in (rows if rows is not None else ())]
            said, cited = _answer.in_own_words(name, _answer.self_descriptions(own, name), self._speaker_lookup,
                                               first=len(citations) + 1)
            if said:
                text, citations = f"{text}\n\n{said}", citations + cited
        return text, citations

    def _whole(self, query: QueryPlan) -> tuple[str, list[Citation], list[Retrieved]] | None:
        """Questions about whole transcripts: what they are about (rag._answer.overview) or their
        key points (rag._answer.key_points), for each transcript in the question's scope (its
        filters, the transcript it names or the one the conversation is on, and for key points of
        named people, those they speak in); with more than ``answer.overview_transcripts``, their
        titles. Returns the text, its citations and the cited passages as the answer's sources;
        None when no transcript is left."""
        a = self.settings.answer
        index = self.index()
        filters = dict(query.filters)
        if not filters.get("transcript") and query.scope:
            filters["transcript"] = query.scope
        rows = index.rows(filters)  # the transcripts the filters leave (a speaker's, a date's...)
        kept = None if rows is None else {index.passages[int(i)].transcript for i in rows}
        if query.key_points and query.speakers:
            theirs = {t for name in query.speakers for t in index.corpus.people.get(name, ())}
            kept = theirs if kept is None else kept & theirs
        tids = [tid for tid in self._manifest if kept is None or tid in kept]
        if not tids:
            return None
        if query.record:
            # "When was this interview recorded?": what the transcripts' front matter says
            return _answer.record(query.record, [self._manifest[tid] for tid in tids]), [], []
        if len(tids) > a.overview_transcripts:
            titles = [f"“{self._manifest[tid].title or tid}”" for tid in tids]
            shown = titles[:10] + ([f"{len(titles) - 10} more"] if len(titles) > 10 else [])
            return (f"{len(tids)} transcripts are searched: {_answer.and_list(shown)}. Name one (by its title, or "
                    "a person in it) for what it is about.", [], [])
        texts: list[str] = []
        citations: list[Citation] = []
        many = a.key_points if query.key_points else a.overview_questions
        per = many if len(tids) == 1 else max(2, many // len(tids))
        if query.cast:
            per = 0  # "Who are the speakers?": the overview's first line
        for tid in tids:
            info = self._manifest[tid]
            rows = [int(i) for i in index.transcript_rows(tid)]
            passages = sorted((index.passages[i] for i in rows), key=lambda p: (p.turns, p.part))
            if query.key_points:
                row_of = {index.passages[i].chunk_id: i for i in rows}
                vectors = index.vectors
                points = self._points(query, passages, per,
                                      None if vectors is None else (lambda p: vectors[row_of[p.chunk_id]]))
                text, cited = _answer.key_points(info.title or tid, points, self._speaker_lookup, first=len(citations) + 1)
            else:
                text, cited = _answer.overview(info.title or tid, info.speakers, passages, per, self._speaker_lookup,
                                               first=len(citations) + 1)
            texts.append(text)
            citations += cited
        sources = list({c.passage.chunk_id: c.passage for c in citations}.values())
        return "\n\n".join(texts), citations, [Retrieved(p, 1.0, rank=i + 1) for i, p in enumerate(sources)]

    def _points(self, query: QueryPlan, passages: list[Passage], n: int,
                vector: Callable[[Passage], np.ndarray] | None) -> list[tuple[Passage, tuple[int, int]]]:
        """A transcript's key points: of the answers of the people (kinds, roles) the question names,
        else of everyone but the interviewers and readers who commented, ``n`` answers spread from first to last, and of
        each the sentence closest to the whole exchange (its passage's vector: the question with
        the answer), i.e. the sentence that answers what was asked; without passage vectors in
        memory, the one closest to the mean of the answer's sentences."""
        def theirs(p: Passage) -> bool:
            if query.speakers:
                return p.speaker in query.speakers
            if query.kinds:
                return p.kind in query.kinds
            if query.roles:
                return p.role in query.roles
            return p.role != "interviewer" and p.kind != "comment"  # readers' comments are not the interview's

        answers: dict[tuple[int, int], list[Passage]] = {}
        for p in passages:
            if p.kind in ("answer", "statement", "comment") and p.text.strip() and theirs(p):
                answers.setdefault(p.turns, []).append(p)
        points = []
        for group in _answer.spread(list(answers.values()), n):
            best = None
            for p, mat in zip(group, self._sentence_vectors([(p, "text") for p in group])):
                if not len(mat):
                    continue
                centre = vector(p) if vector is not None else mat.mean(axis=0)
                cos = mat @ np.asarray(centre, dtype=np.float32)
                i = int(np.argmax(cos))
                if best is None or cos[i] > best[0]:
                    best = (float(cos[i]), p, _answer.passage_sentences(p)[i])
            if best is not None:
                points.append((best[1], best[2]))
        return points

    def _said_by_others(self, query: QueryPlan, top: list[Retrieved],
                        evidence_vec: np.ndarray) -> tuple[str, list[Citation]] | None:
        """A question that names who said something ("What did the interviewer say about X?")
        when the transcripts have someone else saying it: if the named speakers' own words in the
        top passages support it weakly (evidence, as the refusal judges it, under
        ``refusal.premise_named_max``), the best of the other speakers' sentences beats theirs by
        ``refusal.premise_margin`` and would be answered on its own, the answer says the words are
        not the named person's and quotes the others', instead of quoting the named person's
        weaker words (or refusing) as if the question's premise held. ``evidence_vec``: the
        question as the evidence is judged (``_evidence_vec``)."""
        found = self._others_words(query, top, evidence_vec)
        if found is None:
            return None
        named_evidence, alt, pool, chosen, alt_evidence = found
        r = self.settings.refusal
        if named_evidence >= r.premise_named_max or alt_evidence - named_evidence < r.premise_margin:
            return None
        if decide(alt, alt_evidence, chosen, pool, idf=self._idf, vocab=self.index().corpus.words,
                  settings=self.settings.refusal, threshold=self.settings.abstain_threshold):
            return None
        text, citations = _answer.compose(pool, chosen, speakers=self._speaker_lookup)
        if not citations:
            return None
        return f"I found this said by others, not by {_named_in(query)}. {text}", citations

    def _others_words(self, query: QueryPlan, top: list[Retrieved], vec: np.ndarray):
        """For a question naming a speaker (and asking about something): the evidence of the best
        sentence of the named speakers' own words in the top passages, the plan without the
        names, and the sentences and evidence of other people's words; None when there is
        nothing to compare."""
        if not query.refers or not query.topic or query.unknown_names or not top:
            return None
        role_of = self.index().role_of

        def mine(p: Passage, field: str) -> bool:
            # a named person's answer stands with the question it answers (they spoke to that
            # subject); the answer to a question they asked is someone else's words
            return _says(p, query) or (field == "question" and _asked_by(p, query, role_of))

        terms = _answer.question_terms(query.evidence_text)
        n = self.settings.refusal.evidence_passages
        items = [(r.passage, f) for r in top[:n] for f in _answer.FIELDS]
        theirs = [it for it in items if mine(*it)]
        others = [it for it in items if not mine(*it) and getattr(it[0], it[1])]
        if not others:
            return None
        alt = dataclasses.replace(query, speakers=[], roles=[], kinds=[], embed_text=query.evidence_text)
        chosen = _answer.select_sentences(alt.text, vec, top, self._sentence_vectors, cfg=self.settings.answer,
                                          idf=self._idf, answer_type=alt.answer_type, exclude=mine)
        if not chosen:
            return None
        alt_evidence = self._evidence(vec, terms, others)
        named_evidence = self._evidence(vec, terms, theirs) if theirs else 0.0
        return named_evidence, alt, top, chosen, alt_evidence

    def _evidence_vec(self, query: QueryPlan, q_vec: np.ndarray) -> np.ndarray:
        """The vector the evidence is judged against: the question's, or for a question naming a
        speaker ("What did Hopkins say about X?"), the question without the name (a passage
        mentioning Hopkins is not thereby about X)."""
        if query.refers and query.evidence_text != query.embed_text:
            return self._encode([query.evidence_text])[0]
        return q_vec

    def _select(self, query: QueryPlan, q_vec: np.ndarray, top: list[Retrieved],
                evidence_vec: np.ndarray | None = None) -> tuple[list[_answer.Sentence], float]:
        """The sentences to quote from the top passages, and how well the best supports an answer
        (judged against ``evidence_vec``, by default ``_evidence_vec``)."""
        pool = top
        if evidence_vec is None:
            evidence_vec = self._evidence_vec(query, q_vec)
        role_of = self.index().role_of
        if query.refers:
            # "What did Hopkins say about X?": quote the named speaker's passages
            pool = [r for r in top if _refers_to(r.passage, query, role_of)] or top

        def named(p: Passage, field: str) -> bool:
            return _asked_by(p, query, role_of) if field == "question" else _says(p, query)

        chosen = _answer.select_sentences(query.text, q_vec, pool, self._sentence_vectors, cfg=self.settings.answer,
                                          idf=self._idf, answer_type=query.answer_type,
                                          named=named if query.refers else None, parts=query.parts,
                                          # "Who is X?" quotes X's own words only
                                          exclude=(lambda p, f: not named(p, f)) if query.who_is else None)
        pool_ranks = [top.index(r) for r in pool]
        chosen = [dataclasses.replace(c, passage_rank=pool_ranks[c.passage_rank]) for c in chosen]
        # the evidence is judged on the best sentence of the first few passages the question may be
        # answered from, not on what the answer's length budget let in
        judged = [(r.passage, f) for f in _answer.FIELDS for r in pool[: self.settings.refusal.evidence_passages]]
        evidence = self._evidence(evidence_vec, _answer.question_terms(query.evidence_text), judged) if chosen else 0.0
        return chosen, evidence

    def _evidence(self, vec: np.ndarray, terms: set[str], items: list[tuple[Passage, str]]) -> float:
        """How well the best sentence of these (passage, field)s supports an answer: its cosine
        with the question, raised towards its share of the question's (idf-weighted) words."""
        best = 0.0
        for (p, field), mat in zip(items, self._sentence_vectors(items)):
            text = getattr(p, field)
            for (a, b), row in zip(_answer.passage_sentences(p, field), mat):
                cos = float(row @ vec)
                best = max(best, cos, (cos + _answer.lexical_overlap(terms, text[a:b], self._idf)) / 2)
        return best

    def _rarity(self, word: str) -> float:
        terms = _answer._terms(word)
        return self._idf.get(terms[0], 0.0) if terms else 0.0

    def _chat(self):
        if self._chat_model is None:
            from ._llm import make_chat_model

            self._chat_model = make_chat_model(self.settings)
        return self._chat_model

    # ------------------------------------------------------------------ for applications (public)

    def passages(self, transcript: str | None = None) -> list[Passage]:
        """The indexed passages (of one transcript), in store order."""
        index = self.index()
        ps = index.passages
        return list(ps) if transcript is None else [ps[int(i)] for i in index.transcript_rows(transcript)]

    def passage(self, chunk_id: str) -> Passage | None:
        """The indexed passage with this id, or None."""
        index = self.index()
        i = index.by_chunk.get(chunk_id)
        return index.passages[i] if i is not None else None

    def fingerprint(self) -> str:
        """Changes whenever the store's content changes (for caching what is derived from it)."""
        return self.index().fingerprint

    def speakers(self, transcript: str | None = None) -> list[str]:
        """Everyone who answers or asks in the indexed passages (of one transcript), by name."""
        if transcript is None:  # (the speaker filter's values: no passage is read)
            names = set(self.index().filter_values("speaker"))
        else:
            names = {s for p in self.passages(transcript) for s in (p.speaker, p.question_speaker) if s}
        return sorted(names, key=str.lower)

    def roles(self, transcript: str | None = None) -> list[str]:
        """The speaker roles present (interviewer, interviewee, other) in the store or one transcript."""
        infos = self.transcripts()
        if transcript is None:  # (the role filter's values, which hold the askers' roles too: no passage is read)
            roles = set(self.index().filter_values("role"))
        else:
            roles = {p.role for p in self.passages(transcript) if p.role}
        roles |= {sp.role for t, info in infos.items() if transcript in (None, t) for sp in info.speakers if sp.role}
        return sorted(roles)

    def transcript(self, transcript: str):
        """The transcript as indexed: its turns rebuilt from the stored passages and their source
        offsets (rag.transcript_as_indexed), ``text`` the stored source. KeyError if absent."""
        from ._library import transcript_as_indexed

        infos = self.transcripts()
        if transcript not in infos:
            raise KeyError(transcript)
        return transcript_as_indexed(transcript, self.passages(transcript), infos[transcript], self.source_text(transcript))


def _exact_dense(index: Index, q_vec: np.ndarray, n: int, filters: dict[str, Any]) -> list[tuple[int, float]]:
    """Exact nearest passages from the in-memory vectors, among those passing the filters."""
    if index.vectors is None or not len(index):
        return []
    rows = index.rows(filters)
    sims = index.similarities(q_vec, rows)
    top = top_indices(sims, n)
    return [(int(i if rows is None else rows[i]), float(sims[i])) for i in top]


class _Stopped(Exception):
    """The process is ending: a background fill stops between batches."""


_EXITING = threading.Event()
_FILLING: "weakref.WeakSet[threading.Thread]" = weakref.WeakSet()


@atexit.register
def _stop_fills() -> None:
    """Let background sentence fills finish their batch before the interpreter goes away: torch
    running in a daemon thread during finalization aborts the process."""
    _EXITING.set()
    for t in list(_FILLING):
        t.join(timeout=10)


def _release_freed_memory() -> None:
    """Hand freed memory back to the system. Loading a large store, and embedding sentences in
    the background, go through many short-lived buffers (Chroma's pages, BM25's token lists,
    torch's batches), and glibc keeps freed memory for reuse: measured, 100,000 passages left about
    230 MB behind after a load, and a fill grew by about 100 MB per 800 passages."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _asked_by(p: Passage, query: QueryPlan, role_of: dict[str, str]) -> bool:
    """Did someone the question names (by name or role) ask this passage's question?"""
    return bool(p.question_speaker) and (p.question_speaker in query.speakers or role_of.get(p.question_speaker) in query.roles)


def _says(p: Passage, query: QueryPlan) -> bool:
    """Is this passage's answer by someone (or of a kind) the question names?"""
    return p.speaker in query.speakers or p.kind in query.kinds or p.role in query.roles


def _refers_to(p: Passage, query: QueryPlan, role_of: dict[str, str] | None = None) -> bool:
    """Is this passage by someone (or of a kind) the question names, answering or asking?"""
    return _says(p, query) or _asked_by(p, query, role_of or {})


def _values_note(question: str, found: str, citations: list[Citation]) -> str:
    """A question that takes a value for granted (a year, a percentage, an amount) that none of
    the passages found (``found``: their questions and answers) states, answered with a quote
    that gives another: say so before the quote, rather than answer as if the question's value held."""
    pairs = _answer.unsupported_values(question, found, " ".join(c.quote for c in citations))
    if not pairs:
        return ""
    said = " or ".join(f"{v} (the quote gives {' and '.join(others)})" for v, others in pairs)
    return f"The passages found do not mention {said}."


def _named_in(query: QueryPlan) -> str:
    """Whom the question names, for the answer's prose: "Hopkins", "the interviewer"."""
    names = [f"the {r}" for r in query.roles] + ["the readers" if k == "comment" else f"the {k}" for k in query.kinds]
    people = ", ".join(query.speakers)
    if names and people:
        return f"{' or '.join(names)} ({people})"
    return " or ".join(names) or " or ".join(query.speakers)


def _history_turn(a: Answer) -> HistoryTurn:
    source = a.citations[0].passage if a.citations else (a.retrieved[0].passage if a.retrieved else None)
    return HistoryTurn(question=a.resolved_question or a.question, filters=dict(a.filters),
                       speaker=source.speaker if source else None, speakers=list(a.speakers),
                       transcript=source.transcript if source else None)


def load_view(store: Store, settings: Settings, fingerprint: str) -> _snapshot.View:
    """The store's view at ``fingerprint``: read from its snapshot (rag/_snapshot.py) when there
    is one, else built from the store, and then written as the snapshot for later processes
    (``settings.snapshot``; not for a read-only store)."""
    collection = collection_names(settings.model)[0]
    if settings.snapshot:
        view = _snapshot.read(settings, collection, fingerprint)
        if view is not None:
            return view
        # from the snapshot of an earlier version of the store (before this ingest), by what changed
        try:
            _snapshot.update(settings, collection, store, fingerprint)
        except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
            pass  # an earlier snapshot that cannot be read, or no room: built from the store below
        view = _snapshot.read(settings, collection, fingerprint)
        if view is not None:
            return view
    view, whole = build_view(store, fingerprint)
    # written only when what was read is the store at ``fingerprint``: every transcript whole,
    # and no other process's ingest between the fingerprint and the end of the reads
    if settings.snapshot and whole and store.fingerprint() == fingerprint:
        try:
            _snapshot.write(settings, collection, view)
        except (OSError, ValueError, TypeError):
            pass  # no room, no rights, or data JSON cannot hold: this process has its view, the next one tries again
    return view


def build_view(store: Store, fingerprint: str) -> tuple[_snapshot.View, bool]:
    """The view built from the store's records (every passage with its vector, the BM25
    indexes, the idf table), and whether every transcript was read whole."""
    whole = False
    for attempt in range(5):
        manifest = store.manifest()
        # float16 in memory: half the size, and cosines within ~1e-3 of float32 (the fusion
        # and the filtered search use them; Chroma's HNSW search keeps float32)
        passages, vectors = store.all_passages(with_vectors=True, manifest=manifest, vector_dtype=np.float16)
        counts: dict[str, int] = {}
        for p in passages:
            counts[p.transcript] = counts.get(p.transcript, 0) + 1
        if all(counts.get(t, 0) == info.n_passages for t, info in manifest.items()):
            whole = True
            break  # every transcript whole, in the version the manifest names
        time.sleep(0.05 * (attempt + 1))  # caught between another ingest's writes: read again
    speakers = [s for info in manifest.values() for s in info.speakers]
    index = Index(passages, speakers, {t: i.version for t, i in manifest.items()}, fingerprint, vectors)
    df = term_counts(passages)
    return _snapshot.View(index, idf_table(df, len(passages)), manifest, df), whole


def _idf(passages: Sequence[Passage]) -> dict[str, float]:
    """Inverse document frequency of content words over passages (question + answer)."""
    return idf_table(term_counts(passages), len(passages))


def term_counts(passages: Iterable[Passage]) -> dict[str, int]:
    """How many of the passages hold each content word (question + answer): what the idf table
    is made from, kept in the query snapshot so that adding a transcript counts its own."""
    df: dict[str, int] = {}
    for p in passages:
        for t in set(_answer._terms(f"{p.question} {p.text}")):
            df[t] = df.get(t, 0) + 1
    return df


def idf_table(df: dict[str, int], n: int) -> dict[str, float]:
    """The idf of each term held by ``df[term]`` of ``n`` passages."""
    n = max(n, 1)
    return {t: math.log(1 + n / c) for t, c in df.items()}
