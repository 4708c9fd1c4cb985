"""Benchmarks 1 and 2: ingest throughput against the encode ceiling and the naive LangChain
pipeline, re-ingest of an unchanged corpus, and the embedding-speed experiments.

    .venv/bin/python bench/ingest_bench.py [--quick] [--reps 3] [--big-reps 3] [--out result.json]

For each corpus (the development transcripts, and a larger one of copies of them with distinct
ids, >= --big-target passages, made in a temporary folder), and in every repetition, in turn:

* ours: ``rag.ingest(folder, settings, embedder=...)`` into a new embedded store (the model is
  already loaded; everything else is timed: discovery, hashing, parsing, chunking with token
  counts, embedding, writing to Chroma);
* re-ingest: the same call again on the unchanged folder and store;
* ceiling: plain ``SentenceTransformer.encode`` of the very same passage texts
  (``p.embed_text`` of ``chunk_transcript``'s passages), with the same batch size;
* naive: RecursiveCharacterTextSplitter(1000, 200) + HuggingFaceEmbeddings (same bundled model
  folder, loaded before timing) + ``Chroma.from_documents`` into a temporary folder.

Figures are medians over the repetitions.
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from pathlib import Path

import _common as C


def naive_ingest(folder: Path, embeddings, persist: Path) -> dict:
    import chromadb.config
    from langchain_chroma import Chroma
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    t0 = time.perf_counter()
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)
    texts, metas = [], []
    for f in C.transcript_files(folder):
        texts.append(f.read_text(encoding="utf-8", errors="replace"))
        metas.append({"source": str(f.relative_to(folder))})
    docs = splitter.create_documents(texts, metadatas=metas)
    store = Chroma.from_documents(
        docs, embeddings, collection_name="naive", persist_directory=str(persist),
        client_settings=chromadb.config.Settings(anonymized_telemetry=False),
    )
    seconds = time.perf_counter() - t0
    n = store._collection.count()
    try:
        store._client.clear_system_cache()
    except Exception:
        pass
    return {"seconds": seconds, "chunks": n, "chars": sum(len(t) for t in texts)}


SENTENCE_VECTORS = None  # --sentence-vectors


def ours_ingest(folder: Path, store: Path, embedder) -> dict:
    import rag

    settings = C.settings_for(store=store)
    if SENTENCE_VECTORS:
        settings.sentence_vectors = SENTENCE_VECTORS
    t0 = time.perf_counter()
    report = rag.ingest([folder], settings, embedder=embedder)
    first = time.perf_counter() - t0
    assert not report.failed, [f.reason for f in report.failed]
    t1 = time.perf_counter()
    again = rag.ingest([folder], settings, embedder=embedder)
    reingest = time.perf_counter() - t1
    assert {f.status for f in again.files} == {"unchanged"}, again.summary()
    return {"seconds": first, "reingest_seconds": reingest, "passages": report.summary()["passages"], "batch_size": settings.batch_size}


_ST_MODELS: dict[str, object] = {}


def st_model(precision: str):
    """The bundled model in sentence-transformers itself (our Embedder runs its own BERT
    encoder), in that precision (bf16: Linear weights stored in bfloat16, as the Embedder does)."""
    from rag._embed import Embedder

    if precision not in _ST_MODELS:
        _ST_MODELS[precision] = Embedder(C.MODEL, precision=precision, backend="sentence-transformers").model
    return _ST_MODELS[precision]


def ceiling_encode(texts: list[str], batch_size: int, precision: str = "fp32") -> float:
    """Plain ``SentenceTransformer.encode`` of all texts in one call (it sorts them by length
    itself), in the precision our Embedder uses (bf16 = torch's CPU autocast around the call)."""
    import contextlib

    import torch

    model = st_model(precision)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    t0 = time.perf_counter()
    with ctx:
        model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    return time.perf_counter() - t0


def bench_corpus(name: str, folder: Path, embedder, hf_embeddings, reps: int, work: Path) -> dict:
    transcripts, passages, chars = C.parse_and_chunk(folder, embedder)
    texts = [p.embed_text for p in passages]
    tokens = embedder.count_tokens(texts)
    batch = C.settings_for(store=work / "x").batch_size
    runs = {"ours": [], "reingest": [], "ceiling": [], "ceiling_fp32": [], "naive": [], "chunk": []}
    naive_chunks = 0
    for r in range(reps):
        C.log(f"{name}: repetition {r + 1}/{reps} (load {C.loadavg()})")
        t0 = time.perf_counter()
        C.parse_and_chunk(folder, embedder)
        runs["chunk"].append(time.perf_counter() - t0)
        ours = ours_ingest(folder, work / f"ours-{name}-{r}", embedder)
        runs["ours"].append(ours["seconds"])
        runs["reingest"].append(ours["reingest_seconds"])
        shutil.rmtree(work / f"ours-{name}-{r}", ignore_errors=True)
        runs["ceiling"].append(ceiling_encode(texts, batch, embedder.precision))
        if embedder.precision != "fp32":  # the ceiling before it was raised: fp32, library defaults
            runs["ceiling_fp32"].append(ceiling_encode(texts, 32, "fp32"))
        nv = naive_ingest(folder, hf_embeddings, work / f"naive-{name}-{r}")
        runs["naive"].append(nv["seconds"])
        naive_chunks = nv["chunks"]
        shutil.rmtree(work / f"naive-{name}-{r}", ignore_errors=True)
        C.log(f"  ours {ours['seconds']:.1f}s, ceiling {runs['ceiling'][-1]:.1f}s, naive {nv['seconds']:.1f}s, re-ingest {ours['reingest_seconds']:.3f}s")
    med = {k: C.median(v) for k, v in runs.items() if v}
    n = len(passages)
    return {
        "corpus": name,
        "transcripts": len(transcripts),
        "passages": n,
        "chars": chars,
        "mean_tokens": round(sum(tokens) / max(n, 1), 1),
        "batch_size": batch,
        "precision": embedder.precision,
        "ceiling_fp32_s": round(med["ceiling_fp32"], 2) if "ceiling_fp32" in med else None,
        "ceiling_fp32_passages_per_s": round(n / med["ceiling_fp32"], 1) if "ceiling_fp32" in med else None,
        "naive_chunks": naive_chunks,
        "runs_s": {k: [round(x, 3) for x in v] for k, v in runs.items()},
        "ours_s": round(med["ours"], 2),
        "ceiling_s": round(med["ceiling"], 2),
        "naive_s": round(med["naive"], 2),
        "parse_chunk_s": round(med["chunk"], 2),
        "reingest_s": round(med["reingest"], 3),
        "reingest_pct": round(100 * med["reingest"] / med["ours"], 2),
        "ours_passages_per_s": round(n / med["ours"], 1),
        "ceiling_passages_per_s": round(n / med["ceiling"], 1),
        "ours_chars_per_s": round(chars / med["ours"]),
        "ceiling_chars_per_s": round(chars / med["ceiling"]),
        "naive_chars_per_s": round(chars / med["naive"]),
        "overhead_pct": round(100 * (med["ours"] / med["ceiling"] - 1), 1),
        "vs_naive": round(med["naive"] / med["ours"], 2),
    }


def reingest_cli(folder: Path, work: Path, embedder) -> dict:
    """The `rag ingest` command on an unchanged store, as a whole process (for information)."""
    import subprocess

    import rag

    settings = C.settings_for(store=work / "cli-store")
    rag.ingest([folder], settings, embedder=embedder)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        proc = subprocess.run([str(C.VENV_BIN / "rag"), "ingest", str(folder), "--store", str(settings.store), "--json"],
                              capture_output=True, text=True, cwd=work)
        times.append(time.perf_counter() - t0)
        assert proc.returncode == 0, proc.stderr[-2000:]
    shutil.rmtree(work / "cli-store", ignore_errors=True)
    return {"process_s": round(C.median(times), 2), "runs_s": [round(t, 2) for t in times]}


# ---------------------------------------------------------------------------- embedding experiments


def embed_experiments(texts: list[str], reps: int, quality_folder: Path | None, work: Path) -> dict:
    """Ways to raise the ceiling, each timed on the same texts in the same run."""
    import numpy as np
    import torch

    from rag._embed import Embedder, bf16_supported

    fp32 = Embedder(C.MODEL, precision="fp32", backend="sentence-transformers")
    model = fp32.model
    variants: list[tuple[str, callable]] = []

    def st_plain(bs):
        return lambda: model.encode(texts, batch_size=bs, normalize_embeddings=True, show_progress_bar=False)

    def ours(emb, bs):
        return lambda: emb.encode(texts, batch_size=bs)

    def sliced_unsorted(bs):  # what rag._embed did before: slices of 4 batches in input order
        def run():
            out = [model.encode(texts[i : i + bs * 4], batch_size=bs, normalize_embeddings=True, show_progress_bar=False)
                   for i in range(0, len(texts), bs * 4)]
            return np.vstack(out)
        return run

    variants += [("st.encode bs=32 (library default)", st_plain(32)), ("st.encode bs=64", st_plain(64)),
                 ("previous Embedder.encode bs=64 (slices of 256, unsorted across slices)", sliced_unsorted(64))]
    for bs in (16, 32, 64, 128):
        variants.append((f"Embedder.encode bs={bs} (global length sort)", ours(fp32, bs)))
    bf16 = None
    if bf16_supported():
        bf16 = Embedder(C.MODEL, precision="bf16", backend="sentence-transformers")
        bf16._model = model  # the same weights: autocast only changes the arithmetic
        for bs in (32, 64):
            variants.append((f"Embedder.encode bs={bs} bf16 autocast", ours(bf16, bs)))

    def threads(n):
        def run():
            old = torch.get_num_threads()
            torch.set_num_threads(n)
            try:
                return fp32.encode(texts, batch_size=64)
            finally:
                torch.set_num_threads(old)
        return run

    variants.append(("Embedder.encode bs=64, torch 1 thread", threads(1)))
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    for r in range(reps):
        C.log(f"embedding experiments: repetition {r + 1}/{reps} (load {C.loadavg()})")
        for name, fn in variants:
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    base = C.median(times["st.encode bs=64"])
    rows = [{"variant": name, "seconds": round(C.median(ts), 3), "passages_per_s": round(len(texts) / C.median(ts), 1),
             "speedup_vs_st_bs64": round(base / C.median(ts), 2)} for name, ts in times.items()]
    out: dict = {"texts": len(texts), "rows": rows, "bf16_supported": bf16_supported()}
    ref = fp32.encode(texts)
    if bf16 is not None:
        cos = np.sum(ref * bf16.encode(texts), axis=1)
        out["bf16_cosine_to_fp32"] = {"min": round(float(cos.min()), 6), "mean": round(float(cos.mean()), 6)}
    out["openmp"] = omp_experiments(max(3, reps))
    out["int8_dynamic_quantization"] = int8_probe(texts[:200], ref[:200])
    out["onnx_export"] = onnx_probe()
    if quality_folder is not None and bf16 is not None:
        try:
            out["quality"] = quality(quality_folder, {"fp32": fp32, "bf16": bf16}, work)
        except Exception as exc:  # the engine is being worked on by others: keep the timings
            out["quality_error"] = f"{type(exc).__name__}: {exc}"
            C.log(f"quality check failed: {out['quality_error']}")
    return out


def omp_experiments(reps: int) -> list[dict]:
    """OpenMP wait policy and thread count, each in its own process (they are fixed when torch
    loads): one query, 40 sentences, the demo corpus's passages."""
    import json
    import os
    import subprocess
    import sys

    configs = [("library default (spin, then sleep), 2 threads", {"OMP_WAIT_POLICY": ""}),
               ("OMP_WAIT_POLICY=ACTIVE, 2 threads", {"OMP_WAIT_POLICY": "ACTIVE"}),
               ("OMP_WAIT_POLICY=PASSIVE, 2 threads (rag default)", {"OMP_WAIT_POLICY": "PASSIVE"}),
               ("OMP_WAIT_POLICY=PASSIVE, 1 thread", {"OMP_WAIT_POLICY": "PASSIVE", "BENCH_THREADS": "1"})]
    results: dict[str, list[dict]] = {name: [] for name, _ in configs}
    for r in range(2):
        for name, env in (configs if r == 0 else configs[::-1]):
            proc = subprocess.run([sys.executable, str(Path(__file__).with_name("_omp_probe.py")), str(reps)],
                                  env={**os.environ, **env}, capture_output=True, text=True)
            if proc.returncode == 0:
                results[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            else:
                C.log(f"omp probe failed: {proc.stderr[-500:]}")
    rows = []
    for name, got in results.items():
        if not got:
            continue
        row = {"setting": name, "load": C.loadavg()}
        for key in got[0]:
            if key.endswith("_ms"):
                row[key] = round(C.median([g[key] for g in got]), 1)
        rows.append(row)
    return rows


def int8_probe(texts: list[str], ref) -> dict:
    """torch dynamic int8 quantisation of the Linear layers (installed packages only)."""
    import copy
    import warnings

    import numpy as np
    import torch

    from rag._embed import Embedder

    base = Embedder(C.MODEL, precision="fp32", backend="sentence-transformers")
    m8 = copy.deepcopy(base.model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(m8[0].model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    t0 = time.perf_counter()
    v8 = m8.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    t8 = time.perf_counter() - t0
    t0 = time.perf_counter()
    base.model.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    t32 = time.perf_counter() - t0
    cos = np.sum(np.asarray(v8) * ref, axis=1)
    return {"speedup": round(t32 / t8, 2), "cosine_to_fp32_min": round(float(cos.min()), 4), "cosine_to_fp32_mean": round(float(cos.mean()), 4)}


def onnx_probe() -> dict:
    """Can an ONNX model be exported offline from the bundled folder with what is installed?"""
    import importlib.util

    have = {m: importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "optimum", "onnxruntime", "openvino")}
    possible = have["onnxruntime"] and (have["optimum"] or have["onnx"])
    reason = ("sentence-transformers' ONNX backend needs optimum[onnxruntime], and torch.onnx.export needs the onnx "
              "package (and onnxscript for the default exporter); none of them is installed (onnxruntime is, as a "
              "chromadb dependency), so no ONNX model can be exported offline here") if not possible else "possible"
    return {"installed": have, "export_possible": possible, "reason": reason}


def quality(folder: Path, embedders: dict, work: Path) -> dict:
    """hit@1/hit@5 on the development questions with each embedder (fresh store each)."""
    import rag
    from rag import Engine
    from rag._evaluate import evaluate

    out = {}
    for name, emb in embedders.items():
        settings = C.settings_for(store=work / f"quality-{name}")
        rag.ingest([folder], settings, embedder=emb)
        report = evaluate(C.DEV_QUESTIONS, settings, k=5, engine=Engine(settings, embedder=emb))
        m = report["metrics"]
        out[name] = {key: m.get(key) for key in ("hit@1", "hit@5", "mrr", "abstention_accuracy") if key in m}
        shutil.rmtree(work / f"quality-{name}", ignore_errors=True)
        C.log(f"quality {name}: {out[name]}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiniest run: the demo corpus, one repetition, no experiments")
    ap.add_argument("--reps", type=int, default=3, help="repetitions on the development transcripts")
    ap.add_argument("--big-reps", type=int, default=2, help="repetitions on the larger corpus")
    ap.add_argument("--exp-reps", type=int, default=2, help="repetitions of the embedding experiments")
    ap.add_argument("--big-target", type=int, default=5000, help="passages in the larger corpus (at least)")
    ap.add_argument("--no-experiments", action="store_true", help="skip the embedding-speed experiments")
    ap.add_argument("--no-quality", action="store_true", help="skip the hit@k check of the bf16 variant")
    ap.add_argument("--experiments-only", action="store_true", help="only the embedding-speed experiments")
    ap.add_argument("--only-big", action="store_true", help="only the larger corpus (no development-set runs, no experiments)")
    ap.add_argument("--out", help="write the JSON result here")
    ap.add_argument("--sentence-vectors", choices=("encoded", "pooled"), help="Settings.sentence_vectors for our ingest (default: the Settings default)")
    args = ap.parse_args(argv)
    global SENTENCE_VECTORS
    SENTENCE_VECTORS = args.sentence_vectors

    from langchain_huggingface import HuggingFaceEmbeddings

    from rag._embed import Embedder, resolve_model

    folder = C.CORPUS if args.quick else C.DEV_TRANSCRIPTS
    reps, big_reps, target = (1, 1, 60) if args.quick else (args.reps, args.big_reps, args.big_target)
    result: dict = {"machine": C.machine(), "load_before": C.loadavg(), "quick": args.quick}
    work = Path(tempfile.mkdtemp(prefix="rag-bench-ingest-"))
    try:
        embedder = Embedder(C.MODEL)
        embedder.encode(["warm up"])
        hf = HuggingFaceEmbeddings(model_name=resolve_model(C.MODEL), model_kwargs={"device": "cpu"},
                                   encode_kwargs={"normalize_embeddings": True})
        hf.embed_documents(["warm up"])
        # both pipelines write to Chroma: import it before any timing, like the models are loaded
        # before it (otherwise whichever runs first pays the import, about 1 s)
        import chromadb  # noqa: F401
        import langchain_chroma  # noqa: F401

        if args.experiments_only:
            _, passages, _ = C.parse_and_chunk(folder, embedder)
            result["experiments"] = embed_experiments([p.embed_text for p in passages][::2], args.exp_reps, None if args.no_quality else folder, work)
            result["load_after"] = C.loadavg()
            C.emit(result, args.out)
            return 0
        if args.only_big:  # re-measure the larger corpus alone (run_all merges it with --reuse-dev)
            n_dev = len(C.parse_and_chunk(folder, embedder)[1])
        else:
            result["dev"] = bench_corpus("dev", folder, embedder, hf, reps, work)
            n_dev = result["dev"]["passages"]
        copies = max(2, math.ceil(target / max(n_dev, 1)))
        big = C.make_copies(folder, work / "big", copies)
        result["big"] = bench_corpus("big", big, embedder, hf, big_reps, work)
        result["big"]["copies"] = copies
        if not args.only_big:
            result["reingest_cli"] = reingest_cli(folder, work, embedder)
        if not args.quick and not args.no_experiments and not args.only_big:
            _, passages, _ = C.parse_and_chunk(folder, embedder)
            texts = [p.embed_text for p in passages][::2]  # every other passage: the same length mix, half the time
            result["experiments"] = embed_experiments(texts, args.exp_reps, None if args.no_quality else folder, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return C.finish(result, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
