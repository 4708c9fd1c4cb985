"""A store of 100,000 transcripts (issue 14: "the store works with 100,000 transcripts, measured
in bench/, built from stored vectors").

N small two-turn transcript files are written to a folder and ingested by `rag.ingest`, the very
code path of `rag ingest` (discovery, hashing, parsing, chunking with the bundled tokenizer
counting tokens, writing in groups, the manifest, sources.json), except that the model does not
encode 100,000 texts: the files are built from a few dozen question/answer templates, each made
distinct by a reference number, and the embedder hands back each template's real vector (encoded
once by the bundled model). Then, on that store, each timed as a user meets it:

* `rag stats` and `rag ask` as whole processes (interpreter start, imports, model load included);
* `rag ingest --prune` of the folder after one file was changed and one deleted (a process: every
  file is hashed, one is parsed and embedded by the real model, one transcript is removed);
* `Store.repair` with nothing to repair (one count) and `Store.recover` after a simulated kill
  (the `ingest.unfinished` mark): both collections rebuilt from their records, re-embedding
  through the same template lookup.

Opening the store is also timed piece by piece (`open_timings`, in a fresh process): `Store()`
(with its check of the vector index files), `fingerprint()` and `manifest()`, the first read of a
generation (from Chroma, saving `manifest.cache`) and a later one (from that copy). With
`--before ROOT` (another checkout, e.g. the commit before a change), those timings and the `rag
stats` / `rag ask` processes are run with that code too, on the same store in the same run.
`--reads-only` stops after them (no prune, repair or recovery).

Nothing is asserted; the figures go to docs/BENCHMARKS.md (section 8).

    .venv/bin/python bench/many_transcripts.py [--n 100000] [--out FILE.json] [--keep DIR [--reuse]]
        [--before ROOT] [--reads-only]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import _common as C

QA = [
    ("What did you learn from working abroad?", "That small teams with clear goals improve care faster than big programmes."),
    ("How do you measure improvement?", "We track a few outcomes every week and look at the trend, not single numbers."),
    ("What worries you most about the next year?", "Staff burnout, and that improvement becomes a box-ticking exercise."),
    ("Who should lead the change?", "The people who do the work every day, with managers clearing obstacles for them."),
    ("What did the funding pay for?", "Training for ward teams and two analysts who help them use their own data."),
    ("Why did the pilot stop?", "The money ran out before the results were in, so the board did not renew it."),
    ("What would you do differently?", "Start with the patients' questions instead of the targets set from above."),
    ("How do families take part?", "They sit on the design group and test every new leaflet before it is printed."),
    ("What happened to waiting times?", "They fell by a third in two years once the booking system was shared."),
    ("Where did the idea come from?", "A nurse in the night team noticed the same delay every shift and wrote it down."),
    ("How much did it cost?", "About forty thousand pounds, mostly staff time spent away from the wards."),
    ("What did the inspectors say?", "That the unit was safe, but that its records were hard to follow."),
]
_REF = re.compile(r" \(ref \d+\)")


def text_of(i: int) -> str:
    q, a = QA[i % len(QA)]
    return f"Interviewer: {q}\n\nGuest: {a} (ref {i})\n"


class TemplateEmbedder:
    """The bundled model's tokenizer for chunking; for vectors, each text's template's real vector
    (the reference number removed), encoded once."""

    def __init__(self, real):
        self.real = real
        self.name = real.name
        self.max_tokens = real.max_tokens
        self.count_tokens = real.count_tokens
        self.vectors: dict[str, np.ndarray] = {}
        self.encoded = 0

    def encode(self, texts, batch_size: int = 32, progress=None) -> np.ndarray:
        keys = [_REF.sub("", t) for t in texts]
        missing = sorted({k for k in keys if k not in self.vectors})
        if missing:
            for k, v in zip(missing, self.real.encode(missing)):
                self.vectors[k] = v
        self.encoded += len(texts)
        if progress:
            progress(len(texts))
        return np.stack([self.vectors[k] for k in keys]) if keys else np.zeros((0, 384), dtype=np.float32)

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


def run(cmd: list[str], env: dict) -> tuple[float, str]:
    """Run ``cmd`` in the checkout named by env's PYTHONPATH (``-m``/``-c`` put the working folder
    first on sys.path), timed."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=env["PYTHONPATH"])
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return took, proc.stdout


# run in a fresh process with a given checkout first on sys.path: what opening the store costs
_OPEN_TIMINGS = """
import json, os, sys, time
from pathlib import Path
store_dir = Path(sys.argv[1])
t0 = time.perf_counter()
from rag import load_settings
from rag._store import Store
out = {"import_s": time.perf_counter() - t0}
settings = load_settings(store=store_dir)
t0 = time.perf_counter()
store = Store(settings)
out["open_s"] = time.perf_counter() - t0
if hasattr(store, "_index_files_problem"):
    t0 = time.perf_counter()
    out["index_files_problem"] = store._index_files_problem()
    out["index_file_check_s"] = time.perf_counter() - t0
fps = []
for _ in range(3):
    t0 = time.perf_counter()
    store.fingerprint()
    fps.append(time.perf_counter() - t0)
out["fingerprint_s"] = sorted(fps)[1]
cache = store_dir / "manifest.cache"
if cache.exists():
    cache.unlink()
for key in ("manifest_first_s", "manifest_again_s"):
    t0 = time.perf_counter()
    n = len(store.manifest())
    out[key] = time.perf_counter() - t0
out["transcripts"] = n
out["cache_mb"] = round(cache.stat().st_size / 2**20, 1) if cache.exists() else None
print(json.dumps(out))
"""


def open_timings(root: Path, store_dir: Path, env: dict) -> dict:
    took, out = run([sys.executable, "-c", _OPEN_TIMINGS, str(store_dir)], {**env, "PYTHONPATH": str(root)})
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in json.loads(out.strip().splitlines()[-1]).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="transcripts (default 100,000)")
    ap.add_argument("--out", help="write the figures here as JSON")
    ap.add_argument("--keep", help="build in this folder and keep it (default: a temporary folder)")
    ap.add_argument("--reuse", action="store_true", help="the --keep folder holds a store built earlier: measure "
                                                          "on it without building (a killed run is recovered first)")
    ap.add_argument("--before", help="another checkout: time opening the store, `rag stats` and `rag ask` with its code "
                                     "too, on the same store in the same run")
    ap.add_argument("--reads-only", action="store_true", help="stop after the reads (no prune, repair or recovery)")
    args = ap.parse_args()

    from rag import ingest, load_settings
    from rag._embed import Embedder
    from rag._store import Store

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rag-many-"))
    folder, store_dir = work / "transcripts", work / "store"
    folder.mkdir(parents=True, exist_ok=True)
    result: dict = {"n": args.n, "machine": C.machine(), "load_before": C.loadavg()}

    settings = load_settings(store=store_dir)
    embedder = TemplateEmbedder(Embedder(C.MODEL))
    embedder.encode([text_of(0)])  # the model and tokenizer loaded before timing
    if not args.reuse:
        t0 = time.perf_counter()
        for i in range(args.n):
            (folder / f"t{i:06d}.txt").write_text(text_of(i), encoding="utf-8")
        result["write_files_s"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        report = ingest([folder], settings, embedder=embedder)
        result["ingest_s"] = round(time.perf_counter() - t0, 1)
        if report.failed:
            raise SystemExit(f"{len(report.failed)} files failed, e.g. {report.failed[0]}")
    elif (store_dir / "ingest.unfinished").exists():  # an earlier run was stopped inside a write
        store = Store(settings, create=True)
        with store.ingest_lock():
            result["reuse_recovered"] = store.recover(lambda texts: embedder.encode(texts))
    store = Store(settings)
    result["passages"] = store.count()
    result["transcripts"] = len(store.manifest())
    result["store_mb"] = round(sum(f.stat().st_size for f in store_dir.rglob("*") if f.is_file()) / 2**20, 1)
    C.log(f"store of {result['transcripts']:,} transcripts, {result['passages']:,} passages"
          + (f", built in {result['ingest_s']} s" if "ingest_s" in result else ""))

    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False", PYTHONPATH=str(C.ROOT))
    rag = [sys.executable, "-m", "rag.cli"]
    store_arg = ["--store", str(store_dir)]
    question = ["ask", "--json", "What happened to waiting times?"]
    if args.before:  # the same reads with the other checkout's code, first (it neither reads nor writes the cache)
        before_env = {**env, "PYTHONPATH": str(Path(args.before).resolve())}
        result["before"] = {"root": str(Path(args.before).resolve()), "open_timings": open_timings(Path(args.before), store_dir, env)}
        result["before"]["stats_s"], _ = run(rag + ["stats"] + store_arg, before_env)
        took, out = run(rag + question + store_arg, before_env)
        result["before"]["ask_s"], result["before"]["ask_timings_ms"] = round(took, 2), json.loads(out).get("timings_ms", {})
        result["before"]["stats_s"] = round(result["before"]["stats_s"], 2)
        C.log(f"before: {result['before']}")
    Store(settings, create=True)  # a store built before generations gets one, as its next ingest gives it
    result["open_timings"] = open_timings(C.ROOT, store_dir, env)  # ends with manifest.cache saved
    (store_dir / "manifest.cache").unlink(missing_ok=True)
    result["stats_uncached_s"], _ = run(rag + ["stats"] + store_arg, env)  # the first read of a generation
    result["stats_uncached_s"] = round(result["stats_uncached_s"], 2)
    result["stats_s"], out = run(rag + ["stats"] + store_arg, env)
    result["stats_first_line"] = out.splitlines()[0] if out else ""
    result["ask_s"], out = run(rag + question + store_arg, env)
    answer = json.loads(out)
    result["ask_abstained"] = answer["abstained"]
    result["ask_cited"] = answer["citations"][0]["quote"] if answer["citations"] else None
    top = [r["transcript"] for r in answer["retrieved"][:5]]
    want = next(k for k, (q, _) in enumerate(QA) if "waiting times" in q)
    result["ask_top5_right_template"] = sum(int(t[1:7]) % len(QA) == want for t in top)  # of 5
    result["ask_timings_ms"] = answer.get("timings_ms", {})
    C.log(f"after: open {result['open_timings']}, stats {result['stats_s']:.2f} s, ask {result['ask_s']:.2f} s")
    if args.reads_only:
        return finish(result, args.out)

    # one file changed, the next one deleted (on a reused store: the first two still as built)
    as_built = (f for f in sorted(folder.glob("t*.txt")) if f.read_text(encoding="utf-8") == text_of(int(f.stem[1:])))
    first, second = next(as_built), next(as_built)
    first.write_text(text_of(int(first.stem[1:])).replace("Guest:", "Guest: Changed. "), encoding="utf-8")
    second.unlink()
    result["prune_s"], out = run(rag + ["ingest", "--prune", str(folder)] + store_arg, env)
    result["prune_last_line"] = out.strip().splitlines()[-1] if out.strip() else ""

    store = Store(settings)
    t0 = time.perf_counter()
    result["repair_removed"] = store.repair(store.manifest())
    result["repair_s"] = round(time.perf_counter() - t0, 3)

    (store_dir / "ingest.unfinished").write_text("1\n")  # as a killed ingest leaves it
    store = Store(settings, create=True)
    embedder.encoded = 0
    t0 = time.perf_counter()
    with store.ingest_lock():
        notes = store.recover(lambda texts: embedder.encode(texts))
    result["recover_s"] = round(time.perf_counter() - t0, 1)
    result["recover_notes"] = notes
    result["recover_reembedded"] = embedder.encoded
    result["passages_after"] = Store(settings).count()
    result["transcripts_after"] = len(Store(settings).manifest())
    finish(result, args.out)


def finish(result: dict, out: str | None) -> None:
    result["load_after"] = C.loadavg()
    for k in ("stats_s", "ask_s", "prune_s"):
        if k in result:
            result[k] = round(result[k], 2)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2), flush=True)
    if out:
        Path(out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
