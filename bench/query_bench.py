"""Benchmarks 3, 5 and 6: warm query latency at growing store sizes against the naive pipeline's
``similarity_search`` on the same store, peak memory while serving, and 8 threads through one
Engine.

    .venv/bin/python bench/query_bench.py [--quick] [--sizes 1000 10000 100000] [--passes 3] [--out r.json]

How the stores are made: the six development transcripts are ingested for real (parsed, chunked,
embedded); then each store of N passages is written with ``Store.write_transcript`` from those
real passages and their stored vectors: first the originals, then copies under distinct transcript
ids (``copyNNNN/<id>``) whose vectors carry a little Gaussian noise (renormalised), until exactly N
passages. No text is re-embedded, so building 100k passages takes minutes, not hours.

Latency: one Engine per store, ``engine.warm()`` first (as the app does), then the wait for its
background sentence embedding (stores of 3,000 to 20,000 passages; the time is reported). Each
pass asks every question once. Over 20,000 passages the Engine embeds sentences only as questions
need them, so the sentence cache is cleared before each pass and every pass sees "new" questions;
for stores with a background fill the same is measured once more with the cache cleared ("before
the fill"), the figure for the first minutes after start. p50/p95 are per pass; the figures are
medians over passes. The naive pipeline is LangChain's ``Chroma``
(langchain-chroma) opened on the very same collection with ``HuggingFaceEmbeddings`` on the same
model folder, timed on ``similarity_search(q, k=5)``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import _common as C


def base_passages(folder: Path, work: Path, embedder) -> tuple[list, object, dict]:
    """Ingest ``folder`` for real; return its stored passages, vectors and parsed transcripts."""
    import rag
    from rag._store import Store

    settings = C.settings_for(store=work / "base")
    report = rag.ingest([folder], settings, embedder=embedder)
    assert not report.failed, [f.reason for f in report.failed]
    passages, vectors = Store(settings).all_passages(with_vectors=True)
    transcripts, _, _ = C.parse_and_chunk(folder, embedder)
    return passages, vectors, {t.id: t for t in transcripts}


def clears_sentences(n: int) -> bool:
    """Over the background limit nothing embeds sentences ahead of questions: a pass of questions
    the engine has not seen must pay for them, so the cache is cleared before each pass."""
    from rag._engine import SENTENCES_BACKGROUND

    return n > SENTENCES_BACKGROUND


def latency(engine, questions: list[str], passes: int, naive=None, clear: bool | None = None) -> dict:
    import numpy as np

    n = len(engine.index())
    clear = clears_sentences(n) if clear is None else clear
    per_pass = {"ask": [], "retrieve": [], "naive": []}
    parts: dict[str, list[float]] = {}
    errors = 0
    for p in range(passes):
        if clear:
            engine._sent_cache.clear()  # new questions need their passages' sentences embedded
        ret, nv = [], []
        ask, answers, failed = C.ask_all(engine, questions)
        errors += failed
        for a in answers:
            for key, v in a.timings_ms.items():
                parts.setdefault(key, []).append(v)
        for q in questions:
            t0 = time.perf_counter()
            engine.retrieve(q)
            ret.append((time.perf_counter() - t0) * 1000)
        if naive is not None:
            for q in questions:
                t0 = time.perf_counter()
                naive.similarity_search(q, k=5)
                nv.append((time.perf_counter() - t0) * 1000)
        for key, xs in (("ask", ask), ("retrieve", ret), ("naive", nv)):
            if xs:
                per_pass[key].append(C.summary(xs))
    out = {"passages": n, "questions": len(questions), "passes": passes, "errors": errors}
    for key, rows in per_pass.items():
        if rows:
            out[key] = {"p50_ms": round(C.median([r["p50"] for r in rows]), 1), "p95_ms": round(C.median([r["p95"] for r in rows]), 1),
                        "per_pass_p50": [r["p50"] for r in rows]}
    out["ask_parts_p50_ms"] = {k: round(float(np.median(v)), 1) for k, v in parts.items()}
    return out


def naive_on(engine, hf):
    from langchain_chroma import Chroma

    from rag._store import collection_names

    p_name, _ = collection_names(engine.settings.model)
    return Chroma(collection_name=p_name, embedding_function=hf, client=engine.store._client)


def concurrency(engine, questions: list[str], threads: int, reps: int) -> dict:
    n = len(engine.index())
    out: dict = {"passages": n, "questions": len(questions), "threads": threads, "reps": reps}
    for label, workers in (("1 thread", 1), (f"{threads} threads", threads)):
        rates, errors = [], 0
        for _ in range(reps):
            if clears_sentences(n):
                engine._sent_cache.clear()
            failures = []
            lock = threading.Lock()

            def one(q: str) -> None:
                try:
                    a = engine.ask(q)
                    assert a.text
                except Exception as exc:
                    with lock:
                        failures.append(f"{type(exc).__name__}: {exc}")

            t0 = time.perf_counter()
            if workers == 1:
                for q in questions:
                    one(q)
            else:
                with ThreadPoolExecutor(workers) as pool:
                    list(pool.map(one, questions))
            rates.append(len(questions) / (time.perf_counter() - t0))
            errors += len(failures)
            for f in failures[:3]:
                C.log(f"concurrent ask failed: {f}")
        out[label] = {"questions_per_s": round(C.median(rates), 2), "runs": [round(r, 2) for r in rates], "errors": errors}
    out["speedup"] = round(out[f"{threads} threads"]["questions_per_s"] / out["1 thread"]["questions_per_s"], 2)
    out["errors"] = out["1 thread"]["errors"] + out[f"{threads} threads"]["errors"]
    return out


def serve_rss(store: str | None, chroma_url: str | None, questions_file: str, limit: int) -> dict:
    """Run in a subprocess: serve questions from a store, report peak resident memory."""
    from rag import Engine

    before = C.rss_mb_of_self()
    settings = C.settings_for(store=Path(store) if store else None, chroma_url=chroma_url)
    engine = Engine(settings)
    t0 = time.perf_counter()
    engine.warm()
    warm_s = time.perf_counter() - t0
    engine.sentences_ready()  # the peak includes the background-embedded sentences
    qs = C.questions(Path(questions_file), limit)
    for q in qs:
        engine.ask(q)
    out = C.rss_mb_of_self()
    out.update(passages=len(engine.index()), questions=len(qs), warm_s=round(warm_s, 1), rss_after_imports_mb=before.get("VmRSS"))
    return out


def rss_subprocess(store: Path, questions_file: Path, limit: int) -> dict:
    return C.json_subprocess([sys.executable, __file__, "--serve-rss", str(store), "--qfile", str(questions_file), "--limit", str(limit)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiniest run: the demo corpus, tiny stores, one pass")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--seed-passes", type=int, default=5)
    ap.add_argument("--questions", type=int, default=40, help="development questions asked per pass")
    ap.add_argument("--rss-sizes", type=int, nargs="*", default=[10000, 100000])
    ap.add_argument("--concurrency-size", type=int, default=10000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--server-size", type=int, default=10000, help="also measure this size through a Chroma server (0: skip)")
    ap.add_argument("--out")
    C.child_mode_args(ap, "--serve-rss", 20)
    args = ap.parse_args(argv)
    if args.serve_rss:
        print(json.dumps(serve_rss(args.serve_rss, None, args.qfile, args.limit)), flush=True)
        # The figures are out; skip the interpreter's teardown, where native libraries loaded by
        # the measured process now and then abort ("terminate called without an active exception")
        # after everything has been measured.
        os._exit(0)

    import gc

    from langchain_huggingface import HuggingFaceEmbeddings

    import rag
    from rag import Engine
    from rag._embed import Embedder, resolve_model
    from rag._engine import SENTENCES_BACKGROUND, SENTENCES_NOW

    if args.quick:
        folder, sizes, passes, seed_passes, nq = C.CORPUS, [30, 60], 1, 1, 4
        rss_sizes, conc_size, server_size, qfile = [60], 60, 30, C.SEED_QUESTIONS
    else:
        folder, sizes, passes, seed_passes, nq = C.DEV_TRANSCRIPTS, args.sizes, args.passes, args.seed_passes, args.questions
        rss_sizes, conc_size, server_size, qfile = args.rss_sizes, args.concurrency_size, args.server_size, C.DEV_QUESTIONS
    result: dict = {"machine": C.machine(), "load_before": C.loadavg(), "quick": args.quick}
    work = Path(tempfile.mkdtemp(prefix="rag-bench-query-"))
    try:
        embedder = Embedder(C.MODEL)
        embedder.encode(["warm up"])
        hf = HuggingFaceEmbeddings(model_name=resolve_model(C.MODEL), model_kwargs={"device": "cpu"},
                                   encode_kwargs={"normalize_embeddings": True})
        hf.embed_query("warm up")

        # the seed corpus, as the issue's own target
        seed_settings = C.settings_for(store=work / "seed")
        rag.ingest([C.CORPUS], seed_settings, embedder=embedder)
        engine = Engine(seed_settings, embedder=embedder)
        engine.warm()
        seed_qs = C.questions(C.SEED_QUESTIONS, 4 if args.quick else None)
        C.log(f"seed corpus: {len(seed_qs)} questions x {seed_passes} passes (load {C.loadavg()})")
        result["seed"] = latency(engine, seed_qs, seed_passes, naive_on(engine, hf))
        del engine

        base, vectors, transcripts = base_passages(folder, work, embedder)
        sentences = C.base_sentences(C.settings_for(store=work / "base"), base)
        result["base_passages"] = len(base)
        qs = C.questions(qfile, nq)
        result["sizes"] = {}
        for n in sizes:
            C.log(f"building a store of {n} passages (load {C.loadavg()})")
            settings = C.settings_for(store=work / f"n{n}")
            built = C.build_store(settings, base, vectors, transcripts, n, sentences=sentences)
            engine = Engine(settings, embedder=embedder)
            t0 = time.perf_counter()
            engine.warm()
            warm_s = time.perf_counter() - t0
            engine.sentences_ready()
            fill_s = time.perf_counter() - t0 - warm_s
            C.log(f"{n} passages: built in {built['write_s']}s, warm in {warm_s:.1f}s, sentences in {fill_s:.1f}s more; "
                  f"{len(qs)} questions x {passes} passes")
            row = latency(engine, qs, passes, naive_on(engine, hf))
            row.update(build=built, warm_s=round(warm_s, 1))
            if SENTENCES_NOW < n <= SENTENCES_BACKGROUND:
                row["sentence_fill_s"] = round(fill_s, 1)
                row["before_fill"] = latency(engine, qs, passes, clear=True)
            if n == conc_size:
                C.log(f"{n} passages: concurrency")
                row["concurrency"] = concurrency(engine, qs, args.threads, max(1, passes))
            del engine
            gc.collect()
            if n in rss_sizes:
                C.log(f"{n} passages: peak RSS in a subprocess")
                row["memory"] = rss_subprocess(settings.store, qfile, nq)
            result["sizes"][str(n)] = row
            shutil.rmtree(settings.store, ignore_errors=True)

        if server_size:
            C.log(f"server mode: {server_size} passages through `chroma run` (load {C.loadavg()})")
            with C.ChromaServer(work / "server-data") as server:
                settings = C.settings_for(chroma_url=server.url)
                built = C.build_store(settings, base, vectors, transcripts, server_size, sentences=sentences)
                engine = Engine(settings, embedder=embedder)
                engine.warm()
                engine.sentences_ready()  # as for the embedded store of this size
                row = latency(engine, qs, passes, naive_on(engine, hf))
                row["build"] = built
                result["server"] = row
                del engine
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["load_after"] = C.loadavg()
    C.emit(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
