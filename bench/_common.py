"""Shared helpers for the benchmarks: machine facts, statistics, corpora and stores, servers.

Nothing here times anything by itself; each benchmark script measures its figure and its
comparison in the same run and prints a JSON object (see bench/run_all.py).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

VENV_BIN = Path(sys.executable).parent
SHARED = ROOT.parent / "shared" / "data"
DEV = ROOT / "eval" / "qmsum-committee-val"  # the development set, as in ../shared
DEV_TRANSCRIPTS = DEV / "transcripts"
DEV_QUESTIONS = DEV / "questions.jsonl"
CORPUS = ROOT / "corpus"
SEED_QUESTIONS = ROOT / "eval" / "seed.jsonl"
MODEL = "all-MiniLM-L6-v2"


# ---------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def machine() -> dict[str, Any]:
    import torch

    flags = cpu_flags()
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        mem_gb = None
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "cpu_features": sorted(f for f in flags if f in {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_int8", "avx512_vnni"}),
        "memory_gb": mem_gb,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def wait_for_low_load(threshold: float, max_wait: float, poll: float = 15.0, log=print) -> dict[str, Any]:
    """Wait (up to max_wait seconds) until the 1-minute load average is below threshold."""
    t0 = time.monotonic()
    first = loadavg()
    while True:
        now = loadavg()
        if not now or now[0] < threshold:
            return {"waited_s": round(time.monotonic() - t0, 1), "load_at_start": first, "load_when_started": now, "reached": True}
        if time.monotonic() - t0 >= max_wait:
            return {"waited_s": round(time.monotonic() - t0, 1), "load_at_start": first, "load_when_started": now, "reached": False}
        log(f"load {now[0]:.2f} >= {threshold}: waiting ({time.monotonic() - t0:.0f}/{max_wait:.0f} s)")
        time.sleep(poll)


# ---------------------------------------------------------------------------- statistics


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def pct(xs: Sequence[float], q: float) -> float:
    """Percentile with linear interpolation (numpy's default)."""
    import numpy as np

    return float(np.percentile(np.asarray(xs, dtype=float), q)) if len(xs) else float("nan")


def summary(xs: Sequence[float]) -> dict[str, float]:
    return {"p50": round(pct(xs, 50), 2), "p95": round(pct(xs, 95), 2), "mean": round(sum(xs) / len(xs), 2) if xs else None, "n": len(xs)}


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.s = time.perf_counter() - self.t0


def emit(result: dict[str, Any], out: str | None) -> None:
    text = json.dumps(result, indent=2, default=str)
    if out:
        Path(out).write_text(text, encoding="utf-8")
    else:
        print(text)


def log(*args) -> None:
    print("[bench]", *args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- corpora


def transcript_files(folder: Path) -> list[Path]:
    from rag._parse import SUFFIXES

    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith("."))


def parse_and_chunk(folder: Path, embedder) -> tuple[list, list, int]:
    """(transcripts, passages, characters of decoded transcript text) exactly as ingest makes them."""
    from rag._chunk import chunk_transcript
    from rag._parse import parse_bytes, transcript_id_for

    transcripts, passages, chars = [], [], 0
    for f in transcript_files(folder):
        t = parse_bytes(f.read_bytes(), transcript_id_for(f, Path(folder)), f.suffix)
        transcripts.append(t)
        passages.extend(chunk_transcript(t, embedder.count_tokens, embedder.max_tokens))
        chars += len(t.text)
    return transcripts, passages, chars


def make_copies(src: Path, dst: Path, copies: int) -> Path:
    """``copies`` copies of the transcripts under src, each in its own folder: distinct ids, and
    distinct bytes (k trailing newlines on copy k), since byte-identical files are one transcript
    and its duplicates to ingest."""
    dst.mkdir(parents=True, exist_ok=True)
    for k in range(copies):
        sub = dst / f"copy{k:02d}"
        for f in transcript_files(src):
            rel = f.relative_to(src)
            (sub / rel).parent.mkdir(parents=True, exist_ok=True)
            (sub / rel).write_bytes(f.read_bytes() + b"\n" * k)
    return dst


def questions(path: Path, limit: int | None = None, standalone: bool = True) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            q = json.loads(line)
            if standalone and q.get("follow_up_of"):
                continue
            if q["question"] not in seen:
                seen.add(q["question"])
                out.append(q["question"])
    return out[:limit] if limit else out


# ---------------------------------------------------------------------------- synthetic stores


def base_sentences(settings, passages: list) -> list:
    """The stored sentence vectors (rag/_derived.py) of passages read from the store of ``settings``."""
    from rag._store import Store

    store = Store(settings)
    manifest = store.manifest()
    ids = [f"{p.chunk_id}@{manifest[p.transcript].version}" for p in passages]
    got = store.sentence_vectors(ids)
    return [got[i] for i in ids]


def copy_item(tid: str, idx: list[int], copy: int, base_passages: list, base_vectors, transcripts: dict[str, Any], rng,
              noise: float, cos: list[float]) -> tuple:
    """Copy number ``copy`` of the base passages ``idx`` of transcript ``tid``, as a
    ``Store.write_transcripts`` item: the transcript under ``copyNNNN/<id>`` (copy 0: itself),
    its passages' vectors perturbed by Gaussian noise (sigma ``noise``, renormalised; the mean
    cosine to the originals appended to ``cos``)."""
    import numpy as np

    new_id = tid if copy == 0 else f"copy{copy:04d}/{tid}"
    ps = [dataclasses.replace(base_passages[i], transcript=new_id, chunk_id=new_id + base_passages[i].chunk_id[len(tid):]) for i in idx]
    vecs = np.asarray(base_vectors[idx], dtype=np.float32)
    if copy:
        noisy = vecs + rng.normal(0.0, noise, vecs.shape).astype(np.float32)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
        cos.append(float(np.mean(np.sum(noisy * vecs, axis=1))))
        vecs = noisy
    digest = hashlib.sha256(f"{new_id}:{copy}".encode()).hexdigest()
    return dataclasses.replace(transcripts[tid], id=new_id), ps, vecs, digest


def timed_ask(engine, question: str):
    """(milliseconds, answer) of one ``engine.ask``, or None when it raised (logged: counted by
    the caller, never hidden)."""
    t = time.perf_counter()
    try:
        a = engine.ask(question)
    except Exception as exc:
        log(f"ask failed: {type(exc).__name__}: {exc}")
        return None
    return (time.perf_counter() - t) * 1000, a


def ask_all(engine, questions: Sequence[str]) -> tuple[list[float], list[Any], int]:
    """Every question asked once: the milliseconds and answers of those answered, and how many
    raised."""
    times, answers, errors = [], [], 0
    for q in questions:
        got = timed_ask(engine, q)
        if got is None:
            errors += 1
            continue
        times.append(got[0])
        answers.append(got[1])
    return times, answers, errors


def child_mode_args(ap, flag: str, limit: int) -> None:
    """The hidden arguments of a bench script's child mode: ``flag`` (the store), the question
    file and how many of its questions."""
    import argparse

    ap.add_argument(flag, help=argparse.SUPPRESS)
    ap.add_argument("--qfile", help=argparse.SUPPRESS)
    ap.add_argument("--limit", type=int, default=limit, help=argparse.SUPPRESS)


def json_subprocess(argv: list[str]) -> dict[str, Any]:
    """Run a bench script's child mode; its last line of output is the JSON result ({"error": ...}
    when it failed)."""
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def finish(result: dict[str, Any], out: str | None) -> int:
    """The end of a bench run: the load average after it, the result written; exit status 0."""
    result["load_after"] = loadavg()
    emit(result, out)
    return 0


def build_store(settings, base_passages: list, base_vectors, transcripts: dict[str, Any], target: int,
                noise: float = 0.01, seed: int = 0, sentences: list | None = None) -> dict[str, Any]:
    """Write exactly ``target`` passages to the (new) store of ``settings``: the real passages
    with their stored vectors first, then copies of them under distinct transcript ids
    (``copyNNNN/<id>``) with vectors perturbed by Gaussian noise (per-dimension sigma ``noise``,
    then renormalised), each written as a transcript with ``Store.write_transcript``; with
    ``sentences`` (the base passages' sentence vectors, ``base_sentences``), each copy's sentence
    vectors are written with it, as an ingest does (unperturbed: they are only read, not searched)."""
    import numpy as np

    from rag._store import Store

    rng = np.random.default_rng(seed)
    store = Store(settings, create=True)
    by_t: dict[str, list[int]] = {}
    for i, p in enumerate(base_passages):
        by_t.setdefault(p.transcript, []).append(i)
    written, copy, cos = 0, 0, []
    t0 = time.perf_counter()
    while written < target:
        for tid in sorted(by_t):
            if written >= target:
                break
            idx = by_t[tid][: target - written]
            item = copy_item(tid, idx, copy, base_passages, base_vectors, transcripts, rng, noise, cos)
            if sentences is not None:
                store.write_sentences([item], [[sentences[i] for i in idx]])
            store.write_transcripts([item])
            written += len(idx)
        copy += 1
    return {"passages": store.count(), "copies": copy, "write_s": round(time.perf_counter() - t0, 1),
            "noise_sigma": noise, "mean_cos_to_original": round(sum(cos) / len(cos), 4) if cos else 1.0}


# ---------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return 200 <= r.status < 300
    except OSError:
        return False


class ChromaServer:
    """`chroma run --path DIR --host 127.0.0.1 --port N` from the venv, started and stopped by us."""

    def __init__(self, path: Path, port: int | None = None, log_path: Path | None = None) -> None:
        self.path, self.port = Path(path), port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or self.path.parent / f"chroma-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "ChromaServer":
        chroma = VENV_BIN / "chroma"
        env = dict(os.environ, ANONYMIZED_TELEMETRY="False")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([str(chroma), "run", "--path", str(self.path), "--host", "127.0.0.1", "--port", str(self.port)],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while not http_ok(f"{self.url}/api/v2/heartbeat"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"chroma server did not start: {self.log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self.proc = None
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def rss_mb_of_self() -> dict[str, float]:
    """Peak and current resident memory of this process (MB), from the kernel's own accounting."""
    import resource

    # ru_maxrss survives exec: a child started from a big parent reports the parent's size at the
    # fork. VmHWM is this process image's own high-water mark, so it is the peak we report.
    out = {"ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("VmHWM", "VmRSS")):
                out[line.split(":")[0]] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    out["peak_rss_mb"] = out.get("VmHWM", out["ru_maxrss_mb"])
    return out


def settings_for(store: Path | None = None, chroma_url: str | None = None):
    from rag import load_settings

    for key in list(os.environ):
        if key.startswith("RAG_"):
            del os.environ[key]
    return load_settings(store=store, chroma_url=chroma_url)


def fmt_iter(xs: Iterable[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in xs)
