"""Benchmark 7: ready at once (issue #12). Side by side in one run, at the demo corpus, the real
training + development hearings (~3,700 passages, ingested for real), ~8,000 and 100,000 passages:

* what opening a store costs in a fresh process, by step: connecting, reading the manifest,
  reading the passages and their vectors, building the lexical index (bm25s, two indexes) and the
  speaker directory / filter rows (``Index``), the idf table;
* the engine's ``warm()`` and then the latency of every question from the very first one (no
  waiting for anything: sentence vectors are read from the store, none is embedded), p50/p95;
* how many texts the encoder was given apart from the questions (0: no sentence embedded);
* peak RSS of that process (VmHWM);
* a whole cold ``rag ask`` process, with the query-time snapshot (rag/_snapshot.py) and without
  it (``RAG_SNAPSHOT=false``: the view built from Chroma, as before), side by side;
* writing the snapshot (what an ingest adds, once per store version), its size, and opening a
  store with it in a fresh process, by step (connect, fingerprint, reading the snapshot);
* with ``--app``: app launch -> first answer shown in a browser (as bench/coldstart_bench.py);
* then one transcript added by ``rag.ingest``: the whole ingest, and within it bringing the
  snapshot up to date (incremental);
* store size on disk per 1,000 passages (with the stored sentence vectors and the snapshot).

The 8,000 and 100,000 stores are written from the real store's passages, vectors and sentence
vectors (copies under distinct ids, passage vectors with a little noise), as bench/query_bench.py
does: nothing is re-embedded.

    .venv/bin/python bench/ready_bench.py [--quick] [--sizes 8000 100000] [--keep DIR] [--out r.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import _common as C

TRAIN_TRANSCRIPTS = C.SHARED / "qmsum-committee-train" / "transcripts"


def du_mb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1e6, 1)


def timed(out: dict, key: str, fn, digits: int = 3):
    """``fn()``, its seconds written to ``out[key]``."""
    t = time.perf_counter()
    value = fn()
    out[key] = round(time.perf_counter() - t, digits)
    return value


def probe(store: str, qfile: str, limit: int) -> dict:
    """In a fresh process: open the store step by step, warm an Engine, ask every question once."""
    t_start = time.perf_counter()
    from rag import Engine, _derived
    from rag._retrieve import Index
    from rag._store import Store

    import numpy as np

    out: dict = {"import_s": round(time.perf_counter() - t_start, 2)}
    settings = C.settings_for(store=Path(store))
    t = time.perf_counter()
    s = Store(settings)
    out["connect_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    manifest = s.manifest()
    out["manifest_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    passages, vectors = s.all_passages(with_vectors=True, manifest=manifest, vector_dtype=np.float16)
    out["read_passages_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    speakers = [sp for info in manifest.values() for sp in info.speakers]
    index = Index(passages, speakers, {k: i.version for k, i in manifest.items()}, "x", vectors)
    out["index_s"] = round(time.perf_counter() - t, 2)
    # the lexical part alone (one of the two BM25 indexes: stemming, then the matrix from the counts)
    from rag._engine import idf_table, term_counts
    from rag._retrieve import Lexicon, full_tokens

    t = time.perf_counter()
    corpus = [full_tokens(p) for p in passages]
    out["stem_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    bm = Lexicon.of(corpus).bm25()
    out["bm25_index_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    df = term_counts(passages)
    idf = idf_table(df, len(passages))
    out["idf_s"] = round(time.perf_counter() - t, 2)
    out["passages"] = len(passages)
    # the snapshot (rag/_snapshot.py) of that view: what an ingest (or the first process to open
    # a store without one) writes, once per store version
    from rag import _snapshot
    from rag._store import collection_names

    t = time.perf_counter()
    index.fingerprint = s.fingerprint()
    out["fingerprint_s"] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    written = _snapshot.write(settings, collection_names(settings.model)[0], _snapshot.View(index, idf, manifest, df))
    out["snapshot_write_s"] = round(time.perf_counter() - t, 2)
    if written is not None:
        out["snapshot_mb"] = du_mb(written)
    del index, passages, vectors, corpus, bm, s, idf

    class Counting:
        def __init__(self, e):
            self.e, self.texts = e, []

        def __getattr__(self, name):
            return getattr(self.e, name)

        def encode(self, texts, *a, **k):
            self.texts += list(texts)
            return self.e.encode(texts, *a, **k)

    from rag._embed import Embedder

    emb = Counting(Embedder(settings.model))
    engine = Engine(settings, embedder=emb)
    t = time.perf_counter()
    engine.warm()
    out["engine_warm_s"] = round(time.perf_counter() - t, 2)
    out["first_answer_after_start_s"] = None
    qs = C.questions(Path(qfile), limit)
    before = len(emb.texts)
    lat = []
    for q in qs:
        a = engine.ask(q)
        lat.append(a.timings_ms["total_ms"])
        if out["first_answer_after_start_s"] is None:
            out["first_answer_after_start_s"] = round(time.perf_counter() - t_start, 2)
    # texts given to the encoder while answering (the questions, and a question's text without
    # the speaker it names), and how many of them were passages' sentences (none: all stored)
    asked = emb.texts[before:]
    quotable = {x for p in engine.index().passages for x in _derived.sentence_texts(p)}
    out["encoded_texts"] = len(asked)
    out["encoded_sentences"] = sum(1 for x in asked if x in quotable)
    out["questions"] = len(qs)
    out["first_ms"] = round(lat[0], 1)
    out["p50_ms"] = round(C.pct(lat, 50), 1)
    out["p95_ms"] = round(C.pct(lat, 95), 1)
    out["first10_p50_ms"] = round(C.pct(lat[:10], 50), 1)
    out.update(C.rss_mb_of_self())
    return out


def open_probe(store: str) -> dict:
    """In a fresh process, a store with its snapshot: what opening it costs, by step (import,
    connect, fingerprint, reading the snapshot), and the first question after it."""
    t_start = time.perf_counter()
    from rag import Engine, _snapshot
    from rag._store import Store, collection_names

    out: dict = {"import_s": round(time.perf_counter() - t_start, 2)}
    settings = C.settings_for(store=Path(store))
    s = timed(out, "connect_s", lambda: Store(settings))
    fp = timed(out, "fingerprint_s", s.fingerprint)
    view = timed(out, "snapshot_read_s", lambda: _snapshot.read(settings, collection_names(settings.model)[0], fp))
    out["snapshot_used"] = view is not None
    del view
    engine = Engine(settings, store=s)
    timed(out, "engine_index_s", engine.index)
    a = timed(out, "first_ask_s", lambda: engine.ask("What did the Prime Minister say about students?"), 2)
    out["first_ask_timings_ms"] = {k: round(v, 1) for k, v in a.timings_ms.items()}
    out["total_s"] = round(time.perf_counter() - t_start, 2)
    out.update(C.rss_mb_of_self())
    return out


def add_one(store: str, name: str = "added-interview.txt") -> dict:
    """In a fresh process: ingest one more small transcript (the demo interview under a new
    name) into the store, timing the whole ingest and, within it, bringing the snapshot up to
    date (incremental: the other transcripts are taken from the previous snapshot). ``name``
    already in the store: that transcript is replaced (a new version)."""
    import rag
    from rag import _ingest

    settings = C.settings_for(store=Path(store))
    out: dict = {}
    real = _ingest._write_snapshot

    def write_snapshot(*a, **k):
        timed(out, "snapshot_s", lambda: real(*a, **k), 2)

    _ingest._write_snapshot = write_snapshot
    folder = Path(tempfile.mkdtemp(prefix="rag-bench-add-"))
    try:
        text = (C.CORPUS / "nhs-impact-amar-shah-interview.txt").read_text(encoding="utf-8")
        # (other content than the demo's, which the stores hold: not refused as a duplicate)
        (folder / name).write_text(text + f"\nPP: One more question?\n\nAS: One more answer, at {time.time()}.\n",
                                                   encoding="utf-8")
        report = timed(out, "ingest_s", lambda: rag.ingest([folder], settings), 2)
        out["files"] = [f.status for f in report.files]
        out.update(C.rss_mb_of_self())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return out


def probe_subprocess(store: Path, qfile: Path, limit: int) -> dict:
    return C.json_subprocess([sys.executable, __file__, "--probe", str(store), "--qfile", str(qfile), "--limit", str(limit)])


def cold_ask(store: Path, question: str, reps: int, **env: str) -> dict:
    from coldstart_bench import rag_ask

    return rag_ask(store, question, reps, store.parent, **env)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the demo corpus and a 60-passage store built from it, 5 questions")
    ap.add_argument("--sizes", type=int, nargs="*", default=[8000, 100000])
    ap.add_argument("--questions", type=int, default=40)
    ap.add_argument("--ask-reps", type=int, default=3)
    ap.add_argument("--keep", help="build the stores in this folder and keep them (reused when present)")
    ap.add_argument("--out")
    ap.add_argument("--old-reps", type=int, default=1,
                    help="cold `rag ask` processes without the snapshot (RAG_SNAPSHOT=false: the view built from Chroma)")
    ap.add_argument("--build-only", action="store_true", help="with --keep: build the stores now, measure in a later run")
    ap.add_argument("--open-probe", help=argparse.SUPPRESS)
    ap.add_argument("--add-one", help=argparse.SUPPRESS)
    ap.add_argument("--add-name", default="added-interview.txt", help=argparse.SUPPRESS)
    ap.add_argument("--app", action="store_true", help="also time app launch -> first answer in a browser (Playwright, Chromium)")
    C.child_mode_args(ap, "--probe", 40)
    args = ap.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(args.probe, args.qfile, args.limit)))
        return 0
    if args.open_probe:
        print(json.dumps(open_probe(args.open_probe)))
        return 0
    if args.add_one:
        print(json.dumps(add_one(args.add_one, args.add_name)))
        return 0

    import rag
    from rag._embed import Embedder
    from rag._store import Store

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rag-bench-ready-"))
    work.mkdir(parents=True, exist_ok=True)
    nq = 5 if args.quick else args.questions
    reps = 1 if args.quick else args.ask_reps
    sizes = [60] if args.quick else args.sizes
    result: dict = {"machine": C.machine(), "load_before": C.loadavg(), "quick": args.quick, "stores": []}
    try:
        embedder = Embedder(C.MODEL)
        plan = [("demo corpus", work / "demo", [C.CORPUS], C.SEED_QUESTIONS, "What can we learn from Bangladesh?")]
        if args.quick:  # the copies are made from the demo corpus
            real_folders, real_store, qfile, question = [C.CORPUS], work / "demo", C.SEED_QUESTIONS, plan[0][4]
        else:
            real_folders = [C.DEV_TRANSCRIPTS] if not TRAIN_TRANSCRIPTS.is_dir() else [TRAIN_TRANSCRIPTS, C.DEV_TRANSCRIPTS]
            real_name = "development hearings" if len(real_folders) == 1 else "training + development hearings"
            real_store, qfile, question = work / "real", C.DEV_QUESTIONS, "What did the Prime Minister say about students?"
            plan.append((real_name, real_store, real_folders, qfile, question))
        for name, store, folders, qfile, question in plan:
            settings = C.settings_for(store=store)
            row: dict = {"store": name}
            if not (store / "chroma.sqlite3").exists():
                C.log(f"{name}: ingest (load {C.loadavg()})")
                t = time.perf_counter()
                report = rag.ingest(folders, settings, embedder=embedder)
                assert not report.failed, [f.reason for f in report.failed]
                row["ingest_s"] = round(time.perf_counter() - t, 1)
            result["stores"].append(row)
            row["_path"], row["_qfile"], row["_question"] = str(store), str(qfile), question
        real = C.settings_for(store=real_store)
        base, vectors = Store(real).all_passages(with_vectors=True)
        sentences = C.base_sentences(real, base)
        transcripts, _, _ = C.parse_and_chunk(real_folders[0], embedder)
        for extra in real_folders[1:]:
            transcripts += C.parse_and_chunk(extra, embedder)[0]
        by_id = {t.id: t for t in transcripts}
        # a kept hearings store holds the transcript an earlier run's last step added: not copied
        keep = [i for i, p in enumerate(base) if p.transcript in by_id]
        base, vectors, sentences = [base[i] for i in keep], vectors[keep], [sentences[i] for i in keep]
        for n in sizes:
            store = work / f"n{n}"
            row = {"store": f"{n:,} passages"}
            if not (store / "chroma.sqlite3").exists():
                C.log(f"building {n} passages (load {C.loadavg()})")
                row["build"] = C.build_store(C.settings_for(store=store), base, vectors, by_id, n, sentences=sentences)
            row["_path"], row["_qfile"], row["_question"] = str(store), str(qfile), question
            result["stores"].append(row)
        if args.build_only:
            return 0
        for row in result["stores"]:
            store = Path(row.pop("_path"))
            qfile, question = Path(row.pop("_qfile")), row.pop("_question")
            row["load_before"] = C.loadavg()
            # old and new side by side: a cold `rag ask` that builds the view from Chroma (the store
            # has no snapshot yet, and RAG_SNAPSHOT=false keeps it from writing one), then the
            # probe (which writes the snapshot), then fresh processes that read it
            shutil.rmtree(store / "snapshots", ignore_errors=True)  # (an ingest wrote one; the probe times writing it)
            C.log(f"{row['store']}: cold rag ask without the snapshot x{args.old_reps} (load {row['load_before']})")
            row["cold_ask_no_snapshot"] = cold_ask(store, question, max(1, 1 if args.quick else args.old_reps),
                                                   RAG_SNAPSHOT="false")
            C.log(f"{row['store']}: probe, open with the snapshot, cold rag ask x{reps} (load {C.loadavg()})")
            row["probe"] = probe_subprocess(store, qfile, nq)
            row["open"] = C.json_subprocess([sys.executable, __file__, "--open-probe", str(store)])
            row["cold_ask"] = cold_ask(store, question, reps)
            if args.app:
                from coldstart_bench import ui_first_answer

                C.log(f"{row['store']}: app launch -> first answer (load {C.loadavg()})")
                try:
                    row["app"] = ui_first_answer(store, question, 1, work, timeout_s=300)
                except Exception as exc:  # no browser here: say so in the results
                    row["app"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            # last (it changes the store): one transcript added, the snapshot brought up to date
            C.log(f"{row['store']}: one transcript added (load {C.loadavg()})")
            row["add_one"] = C.json_subprocess([sys.executable, __file__, "--add-one", str(store)])
            passages = row["probe"].get("passages") or 0
            row["disk_mb"] = du_mb(store)
            row["disk_mb_per_1000"] = round(row["disk_mb"] / passages * 1000, 1) if passages else None
            row["load_after"] = C.loadavg()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return C.finish(result, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
