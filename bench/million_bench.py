"""Issue 12, point 4: a store of (by default) 1,000,000 passages behind a `chroma run` server,
and what an app process pays to open it and answer from it, with the current engine (the
query-time snapshot in a local cache, rag/_snapshot.py; the stored sentence vectors,
rag/_derived.py; the store generation as fingerprint).

    # build the folder, then measure (the folder is kept: its path is printed and in the JSON)
    .venv/bin/python bench/million_bench.py [--passages 1000000] [--data DIR] [--out r.json]
    # measure again, later, against the filled folder (a fresh server, fresh clients, an empty cache)
    .venv/bin/python bench/million_bench.py --measure-only --data DIR [--out r.json]
    # a client opened while the server's store is being written (does it settle?)
    .venv/bin/python bench/million_bench.py --while-writing --data DIR2 --passages 100000 [--out r.json]

Build: the base transcripts (default: the development hearings, eval/qmsum-committee-val) are
ingested for real once (parsed, chunked, embedded with the bundled model, sentence vectors
included) into ``DIR/base`` (kept and reused). Their stored passages, vectors and sentence vectors
are then written into ``DIR/chroma`` with rag's own write path (``Store.write_sentences`` then
``Store.write_transcripts``, the order an ingest writes them in): the originals first, then copies
under distinct transcript ids (``copyNNNN/<id>``) whose passage vectors carry Gaussian noise (sigma
0.01 per dimension, renormalised; the sentence vectors are copied as they are: they are read, not
searched), ``--copies-per-write`` copies per write call, until exactly N passages. Nothing is
re-embedded. ``--build-via embedded`` (the default) writes with an embedded client on the folder
(a ``PersistentClient``, the same files a server keeps); ``--build-via server`` writes through a
`chroma run` server on it, as `rag ingest` with ``RAG_CHROMA_URL`` does. The build's own figures
go to ``DIR/build.json``; ``--resume`` continues a stopped build. Run the build with ``nice``
on a shared machine: ``--build-only`` then ``--measure-only``.

Measure: a fresh `chroma run --path DIR/chroma` on 127.0.0.1, an empty local cache
(``RAG_CACHE_DIR=DIR/cache``), then, one after the other:

1. a fresh client process (``--client``) opens the store as the app does: ``Engine(settings)``,
   the first index load (``engine.index()``: no snapshot in the cache yet, so it reads every
   passage and vector over HTTP, builds the BM25 indexes, filter rows, speakers and idf, and writes
   the snapshot into the cache), ``warm()`` (the model); then asks ``--questions`` development
   questions once each, timed from the very first;
2. a second fresh client process, the same steps: this one reads the snapshot from the cache;
3. ``--cold-reps`` cold `rag ask` processes (``python -m rag.cli ask``, wall time) with the cache.

Each client reports its own peak RSS (VmHWM); the parent samples the clients' and the server's
RSS every 0.5 s and stops a client that passes ``--client-cap-mb`` (the figure at that moment is
reported with the phase it was in). Also: the folder's size on disk, the cache's, the server's RSS,
and the 1-minute load average at each step.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import _common as C

PHASE_PREFIX = "[phase] "


# ---------------------------------------------------------------------------- helpers


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS / VmHWM of a process in MB (empty when it is gone)."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS", "VmHWM")):
                out[line.split(":")[0]] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return out


def du_mb(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return round(total / 2**20, 1)


def mem_available_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def client_settings(url: str, cache: Path | None = None):
    """Server-mode settings as an app process on another machine has them: the server's URL and
    its own local cache folder for the snapshot."""
    settings = C.settings_for(chroma_url=url)
    return settings.model_copy(update={"cache_dir": cache}) if cache else settings


# ---------------------------------------------------------------------------- build


def base_data(folder: Path, base_store: Path):
    """The base transcripts ingested for real into ``base_store`` (once; reused when there):
    their stored passages, vectors and sentence vectors, and the transcripts parsed again."""
    import rag
    from rag._parse import parse_bytes, transcript_id_for
    from rag._store import Store

    settings = C.settings_for(store=base_store)
    if not (base_store / "chroma.sqlite3").exists():
        report = rag.ingest([folder], settings)
        if report.failed:
            raise SystemExit(f"ingest of {folder} failed: {[f.reason for f in report.failed]}")
    passages, vectors = Store(settings).all_passages(with_vectors=True)
    sentences = C.base_sentences(settings, passages)
    transcripts = {}
    for f in C.transcript_files(folder):
        t = parse_bytes(f.read_bytes(), transcript_id_for(f, Path(folder)), f.suffix)
        transcripts[t.id] = t
    missing = {p.transcript for p in passages} - set(transcripts)
    if missing:
        raise SystemExit(f"{base_store} holds transcripts not in {folder}: {sorted(missing)[:3]}")
    return passages, vectors, sentences, transcripts


def resume_point(store) -> tuple[int, int]:
    """(passages stored, next copy number) of a build that was stopped: passages of a write that
    was cut short (no manifest record points at them) are removed first, as an ingest would."""
    manifest = store.manifest()
    removed = store.repair(manifest)
    copies = [int(tid[4:8]) for tid in manifest if tid.startswith("copy")]
    C.log(f"resuming: {store.count():,} passages, {len(manifest):,} transcripts, last copy {max(copies, default=0)}, "
          f"{removed} passages of an unfinished write removed")
    return store.count(), max(copies, default=0) + 1


def fill(store, base: list, vectors, sentences: list, transcripts: dict, target: int, per_write: int = 1,
         noise: float = 0.01, seed: int = 0, log_every_s: float = 60.0, written: int = 0, copy: int = 0,
         checkpoint=None, stop=None) -> dict:
    """Write exactly ``target`` passages to ``store`` (a ``rag._store.Store``) with rag's write
    path: the base passages, then noisy copies under distinct transcript ids, ``per_write`` copies
    per ``write_sentences`` + ``write_transcripts`` call (``written``/``copy``: where a stopped
    build resumes; ``checkpoint(figures)`` is called at each progress line; ``stop()`` true ends
    the fill early)."""
    import numpy as np

    by_t: dict[str, list[int]] = {}
    for i, p in enumerate(base):
        by_t.setdefault(p.transcript, []).append(i)
    start, cos = written, []
    t0 = last = time.perf_counter()
    progress = []
    while written < target and not (stop and stop()):
        items, sents = [], []
        for _ in range(per_write):
            rng = np.random.default_rng((seed, copy))  # per copy: the same noise whether resumed or not
            for tid in sorted(by_t):
                if written >= target:
                    break
                idx = by_t[tid][: target - written]
                items.append(C.copy_item(tid, idx, copy, base, vectors, transcripts, rng, noise, cos))
                sents.append([sentences[i] for i in idx])
                written += len(idx)
            copy += 1
            if written >= target:
                break
        store.write_sentences(items, sents)
        store.write_transcripts(items)
        now = time.perf_counter()
        if now - last >= log_every_s or written >= target:
            last = now
            rate = (written - start) / (now - t0)
            progress.append({"passages": written, "s": round(now - t0, 1), "load1": C.loadavg()[0]})
            C.log(f"filled {written:,}/{target:,} passages in {now - t0:.0f} s ({rate:,.0f}/s, load {C.loadavg()[0]}, "
                  f"available {mem_available_mb()} MB)")
            if checkpoint:
                checkpoint({"resumed_at": start, "passages": written, "write_s": round(now - t0, 1), "progress": progress})
    write_s = time.perf_counter() - t0
    return {"passages": written, "copies": copy, "write_s": round(write_s, 1),
            "passages_per_s": round((written - start) / write_s, 1) if write_s else None, "resumed_at": start,
            "noise_sigma": noise, "mean_cos_to_original": round(sum(cos) / len(cos), 4) if cos else 1.0,
            "progress": progress}


def build(args, data: Path) -> dict:
    """Fill ``data/chroma`` up to ``args.passages`` (``args.build_via``: embedded or server)."""
    import contextlib

    from rag._store import Store

    earlier = json.loads((data / "build.json").read_text()).get("build", {}) if (data / "build.json").exists() else {}
    t0 = time.perf_counter()
    base, vectors, sentences, transcripts = base_data(args.base, data / "base")
    base_s = time.perf_counter() - t0
    C.log(f"{len(base):,} base passages from {len(transcripts)} transcripts in {base_s:.0f} s")
    with contextlib.ExitStack() as stack:
        if args.build_via == "server":
            server = stack.enter_context(C.ChromaServer(data / "chroma", log_path=data / "chroma-server.log"))
            settings, server_pid = C.settings_for(chroma_url=server.url), server.proc.pid
        else:
            settings, server_pid = C.settings_for(store=data / "chroma"), None
        store = Store(settings, create=True)
        written, copy = resume_point(store) if args.resume else (0, 0)
        runs = earlier.get("runs", []) if args.resume else []

        def checkpoint(run: dict) -> None:  # the figures so far, for a build that is stopped
            (data / "build.json").write_text(json.dumps({"passages": run["passages"], "complete": False,
                                                         "build": {"via": args.build_via, "runs": runs + [run]}}, indent=2))

        built = fill(store, base, vectors, sentences, transcripts, args.passages, per_write=args.copies_per_write,
                     written=written, copy=copy, checkpoint=checkpoint)
        built.update(via=args.build_via, copies_per_write=args.copies_per_write, base_passages=len(base),
                     base_transcripts=len(transcripts), passages=store.count(), transcripts=len(store.manifest()),
                     load_after_fill=C.loadavg())
        if server_pid:
            built["server_rss_after_fill_mb"] = proc_status(server_pid).get("VmRSS")
    built["runs"] = runs + [{k: built[k] for k in ("resumed_at", "passages", "write_s", "progress")}]
    if len(built["runs"]) > 1:
        built["write_s"] = round(sum(r["write_s"] for r in built["runs"]), 1)
        built["passages_per_s"] = round(built["passages"] / built["write_s"], 1) if built["write_s"] else None
    if built["passages"] != args.passages:
        raise SystemExit(f"the store holds {built['passages']} passages, not {args.passages}")
    (data / "build.json").write_text(json.dumps({"passages": args.passages, "complete": True, "build": built}, indent=2))
    return built


# ---------------------------------------------------------------------------- the client (a child process)


def index_parts_mb(index) -> dict:
    """The view's array parts, by size (MB): the passage vectors and the two BM25 indexes' sparse
    score matrices (memory-mapped when read from the snapshot: counted here, resident only as far
    as they are touched)."""
    import numpy as np

    def nbytes(obj) -> int:
        if isinstance(obj, np.ndarray):
            return obj.nbytes
        if isinstance(obj, dict):
            return sum(nbytes(v) for v in obj.values())
        return 0

    out = {"vectors": getattr(index.vectors, "nbytes", 0)}
    for name in ("bm25", "bm25_answer"):
        out[name] = nbytes(getattr(getattr(index, name), "scores", {}) or {})
    return {k: round(v / 2**20, 1) for k, v in out.items()}


def client(url: str, cache: str, qfile: str, limit: int) -> dict:
    """Runs in a fresh process: open the store as the app does, ask, report."""
    def phase(name: str) -> None:
        print(PHASE_PREFIX + name, file=sys.stderr, flush=True)

    phase("imports")
    t_start = time.perf_counter()
    from rag import Engine
    from rag import _snapshot
    from rag._store import collection_names

    import_s = time.perf_counter() - t_start
    settings = client_settings(url, Path(cache))
    rss_before = C.rss_mb_of_self()
    phase("engine")
    t0 = time.perf_counter()
    engine = Engine(settings)
    fp = engine.store.fingerprint()
    create_s = time.perf_counter() - t0
    cached = _snapshot.ready(settings, collection_names(settings.model)[0], fp)
    phase("index_load")
    t1 = time.perf_counter()
    n = len(engine.index())
    index_s = time.perf_counter() - t1
    rss_after_index = C.rss_mb_of_self()
    parts = index_parts_mb(engine.index())
    phase("warm")
    t2 = time.perf_counter()
    engine.warm()
    warm_s = time.perf_counter() - t2
    phase("ask")
    qs = C.questions(Path(qfile), limit)
    times, answers, errors = C.ask_all(engine, qs)
    abstained = sum(bool(getattr(a, "abstained", False)) for a in answers)
    fp_ms = []
    for _ in range(3):
        t = time.perf_counter()
        engine.store.fingerprint()
        fp_ms.append((time.perf_counter() - t) * 1000)
    phase("done")
    out = {"passages": n, "snapshot_in_cache_before": cached, "import_s": round(import_s, 2),
           "engine_create_s": round(create_s, 2), "index_load_s": round(index_s, 1), "warm_s": round(warm_s, 1),
           "open_s": round(create_s + index_s + warm_s, 1), "questions": len(qs), "answered": len(times),
           "errors": errors, "abstained": abstained,
           "ask_first_ms": round(times[0], 1) if times else None,
           "ask_p50_ms": round(C.pct(times, 50), 1) if times else None,
           "ask_p95_ms": round(C.pct(times, 95), 1) if times else None,
           "ask_max_ms": round(max(times), 1) if times else None,
           "ask_ms": [round(t, 1) for t in times],
           "rss_before_engine_mb": rss_before.get("VmRSS"), "rss_after_index_mb": rss_after_index.get("VmRSS"),
           "index_parts_mb": parts, "transcripts": len(engine.transcripts()), "fingerprint_ms": round(C.median(fp_ms), 2)}
    out.update({"client_" + k: v for k, v in C.rss_mb_of_self().items()})
    return out


# ---------------------------------------------------------------------------- measure


def run_client(cmd: list[str], server_pid: int | None, cap_mb: float, timeout_s: float, env: dict | None = None) -> dict:
    """Run a client process, sampling its RSS and the server's every 0.5 s; its JSON figures
    (or why it was stopped, or its error)."""
    result: dict = {"load_before": C.loadavg(), "mem_available_before_mb": mem_available_mb()}
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    state: dict = {"phase": "start", "stderr": [], "phase_at_s": {}, "load_at": {}}

    def read_stderr() -> None:
        for line in child.stderr:
            if line.startswith(PHASE_PREFIX):
                state["phase"] = line[len(PHASE_PREFIX):].strip()
                state["phase_at_s"][state["phase"]] = round(time.perf_counter() - t0, 1)
                state["load_at"][state["phase"]] = C.loadavg()[0]
                C.log(f"client: {state['phase']} at {time.perf_counter() - t0:.0f} s (RSS {proc_status(child.pid).get('VmRSS')} MB, "
                      f"load {C.loadavg()[0]})")
            else:
                state["stderr"].append(line)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    peak_client = peak_server = 0.0
    while child.poll() is None:
        c = proc_status(child.pid).get("VmRSS", 0.0)
        s = proc_status(server_pid).get("VmRSS", 0.0) if server_pid else 0.0
        peak_client, peak_server = max(peak_client, c), max(peak_server, s)
        elapsed = time.perf_counter() - t0
        if c > cap_mb or elapsed > timeout_s:
            why = f"client RSS {c:,.0f} MB > cap {cap_mb:,.0f} MB" if c > cap_mb else f"still running after {timeout_s:.0f} s"
            result["client_stopped"] = {"reason": why, "phase": state["phase"], "after_s": round(elapsed, 1), "client_rss_mb": c,
                                        "server_rss_mb": s, "mem_available_mb": mem_available_mb(), "load1": C.loadavg()[0]}
            C.log(f"stopping the client: {why} (phase {state['phase']})")
            child.kill()
            break
        time.sleep(0.5)
    stdout, _ = child.communicate()
    reader.join(timeout=5)
    result.update(wall_s=round(time.perf_counter() - t0, 1), phases_at_s=state["phase_at_s"], load_at_phase=state["load_at"],
                  sampled_peak_client_rss_mb=peak_client, sampled_peak_server_rss_mb=peak_server, load_after=C.loadavg())
    if "client_stopped" not in result:
        if child.returncode != 0:
            result["client_error"] = "".join(state["stderr"])[-3000:]
        else:
            result["client"] = json.loads(stdout.strip().splitlines()[-1])
    return result


def cold_asks(url: str, cache: Path, question: str, reps: int) -> list[dict]:
    """Cold `rag ask` processes against the server with the local cache: wall seconds each."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(RAG_CHROMA_URL=url, RAG_CACHE_DIR=str(cache), PYTHONPATH=str(C.ROOT), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False")
    out = []
    for _ in range(reps):
        load = C.loadavg()[0]
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "rag.cli", "ask", question], capture_output=True, text=True, env=env)
        s = time.perf_counter() - t
        out.append({"s": round(s, 2), "rc": proc.returncode, "load1": load,
                    **({"stderr": proc.stderr[-500:]} if proc.returncode else {})})
        C.log(f"cold rag ask: {s:.2f} s (rc {proc.returncode}, load {load})")
    return out


def measure(data: Path, args) -> dict:
    """A fresh server on ``data/chroma``, an empty local cache, two fresh clients one after the
    other (the first builds the cache, the second reads it), cold `rag ask` processes."""
    cache = data / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    result: dict = {"data": str(data), "load_before": C.loadavg(), "mem_available_before_mb": mem_available_mb(),
                    "store_size_mb": du_mb(data / "chroma")}
    with C.ChromaServer(data / "chroma", log_path=data / "chroma-server.log") as server:
        spid = server.proc.pid
        result["server_rss_idle_mb"] = proc_status(spid).get("VmRSS")
        for name in ("first_client", "second_client"):
            C.log(f"{name} (load {C.loadavg()}, available {mem_available_mb()} MB)")
            cmd = [sys.executable, __file__, "--client", server.url, "--cache", str(cache), "--qfile", str(args.qfile),
                   "--questions", str(args.questions)]
            result[name] = run_client(cmd, spid, args.client_cap_mb, args.client_timeout_s)
            result[name]["server_rss_after_mb"] = proc_status(spid).get("VmRSS")
            result[name]["cache_size_mb"] = du_mb(cache)
        if args.cold_reps:
            result["cold_ask"] = cold_asks(server.url, cache, args.cold_question, args.cold_reps)
        after = proc_status(spid)
        result["server_rss_after_mb"] = after.get("VmRSS")
        result["server_peak_rss_mb"] = after.get("VmHWM")
    result["load_after"] = C.loadavg()
    return result


# ---------------------------------------------------------------------------- a client while the store is written


def while_writing(args, data: Path) -> dict:
    """A server on ``data/chroma`` (filled to ``--passages`` first, if not yet); a writer process
    adds copies through it for ``--writing-s`` seconds while a fresh client opens the store and asks
    the questions again and again; the client's view loads, question times and RSS over that time,
    then for ``--settle-s`` seconds after the writer stopped."""
    if not (data / "build.json").exists() or not json.loads((data / "build.json").read_text()).get("complete"):
        build(args, data)
    cache = data / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    result: dict = {"data": str(data), "load_before": C.loadavg(), "writing_s": args.writing_s, "settle_s": args.settle_s}
    with C.ChromaServer(data / "chroma", log_path=data / "chroma-server.log") as server:
        writer = subprocess.Popen([sys.executable, __file__, "--writer", server.url, "--data", str(data),
                                   "--base", str(args.base), "--copies-per-write", "1", "--writing-s", str(args.writing_s)],
                                  stdout=subprocess.PIPE, text=True)
        cmd = [sys.executable, __file__, "--watch-client", server.url, "--cache", str(cache), "--qfile", str(args.qfile),
               "--questions", str(args.questions), "--writing-s", str(args.writing_s), "--settle-s", str(args.settle_s)]
        result["client"] = run_client(cmd, server.proc.pid, args.client_cap_mb, args.writing_s + args.settle_s + 3600)
        out, _ = writer.communicate(timeout=600)
        result["writer"] = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"error": writer.returncode}
    result["load_after"] = C.loadavg()
    return result


def writer(url: str, data: Path, base_folder: Path, seconds: float) -> dict:
    """Adds copies of the base transcripts through the server for ``seconds`` (one transcript
    per write: each write is a new store generation)."""
    from rag._store import Store

    store = Store(C.settings_for(chroma_url=url), create=True)
    base, vectors, sentences, transcripts = base_data(base_folder, data / "base")
    written, copy = resume_point(store)
    end = time.monotonic() + seconds
    got = fill(store, base, vectors, sentences, transcripts, 10**9, per_write=1, written=written, copy=copy,
               stop=lambda: time.monotonic() > end)
    return {"from": written, "to": got["passages"], "s": got["write_s"], "passages_per_s": got["passages_per_s"]}


def watch_client(url: str, cache: str, qfile: str, limit: int, writing_s: float, settle_s: float) -> dict:
    """Runs in a fresh process while a writer adds transcripts: opens the store and asks the
    questions round after round; every view (re)load is timed (``Engine._load`` wrapped)."""
    from rag import Engine

    engine = Engine(client_settings(url, Path(cache)))
    loads: list[dict] = []
    t_start = time.perf_counter()
    inner = engine._load

    def timed_load(fp: str) -> None:
        t = time.perf_counter()
        inner(fp)
        loads.append({"at_s": round(t - t_start, 1), "s": round(time.perf_counter() - t, 2), "fingerprint": fp,
                      "passages": len(engine._index) if engine._index is not None else None})
        print(PHASE_PREFIX + f"load {len(loads)} ({loads[-1]['s']} s, {loads[-1]['passages']} passages)", file=sys.stderr, flush=True)

    engine._load = timed_load
    engine.warm()
    qs = C.questions(Path(qfile), limit)
    asks: list[dict] = []
    while time.perf_counter() - t_start < writing_s + settle_s:
        for q in qs:
            got = C.timed_ask(engine, q)
            asks.append({"at_s": round(time.perf_counter() - t_start, 1), "ms": round(got[0], 1) if got else None})
            if time.perf_counter() - t_start >= writing_s + settle_s:
                break
    during = [a["ms"] for a in asks if a["ms"] is not None and a["at_s"] <= writing_s]
    after = [a["ms"] for a in asks if a["ms"] is not None and a["at_s"] > writing_s]
    return {"loads": loads, "loads_during_writing": sum(1 for x in loads if x["at_s"] <= writing_s),
            "loads_after_writing": sum(1 for x in loads if x["at_s"] > writing_s),
            "asked_during": len(during), "asked_after": len(after),
            "p50_during_ms": round(C.pct(during, 50), 1) if during else None,
            "p50_after_ms": round(C.pct(after, 50), 1) if after else None,
            "p95_after_ms": round(C.pct(after, 95), 1) if after else None,
            **{"client_" + k: v for k, v in C.rss_mb_of_self().items()}}


# ---------------------------------------------------------------------------- report


def table(r: dict) -> str:
    b, m = r.get("build") or {}, r.get("measure") or {}
    rows = [("passages", f"{r.get('passages', 0):,}")]
    if b.get("write_s"):
        rows += [(f"build ({b.get('via', 'server')})", f"{b['write_s']:,} s ({b['passages_per_s']:,} passages/s), "
                  f"{b.get('transcripts', 0):,} transcripts")]
    rows += [("store size on disk (chroma folder)", f"{m.get('store_size_mb', 0):,} MB"),
             ("server RSS idle", f"{m.get('server_rss_idle_mb')} MB")]
    for name in ("first_client", "second_client"):
        x = m.get(name) or {}
        c = x.get("client") or {}
        if c:
            la = x.get("load_at_phase", {})
            rows += [(f"{name}: open (Engine + first index load + warm)",
                      f"{c['open_s']} s (index load {c['index_load_s']} s, snapshot in cache before: {c['snapshot_in_cache_before']}; "
                      f"warm {c['warm_s']} s; import {c['import_s']} s; load {la.get('index_load')})"),
                     (f"{name}: ask p50 / p95 from the first question",
                      f"{c['ask_p50_ms']} / {c['ask_p95_ms']} ms ({c['answered']} of {c['questions']}, first {c['ask_first_ms']} ms, "
                      f"max {c['ask_max_ms']} ms, {c['errors']} errors; load {la.get('ask')})"),
                     (f"{name}: peak RSS (VmHWM)", f"{c['client_peak_rss_mb']:,} MB (after index load {c['rss_after_index_mb']:,} MB)"),
                     (f"{name}: server RSS after", f"{x.get('server_rss_after_mb')} MB; cache {x.get('cache_size_mb')} MB")]
        if x.get("client_stopped"):
            s = x["client_stopped"]
            rows += [(name, f"stopped in phase `{s['phase']}` after {s['after_s']} s: {s['reason']}")]
        if x.get("client_error"):
            rows += [(name, "failed: " + x["client_error"].strip().splitlines()[-1][:200])]
    if m.get("cold_ask"):
        rows += [("cold `rag ask` with the cache", ", ".join(f"{a['s']} s (load {a['load1']})" for a in m["cold_ask"]))]
    rows += [("server RSS after all / peak", f"{m.get('server_rss_after_mb')} / {m.get('server_peak_rss_mb')} MB")]
    return "| figure | measured |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=1_000_000, help="passages to write (default 1,000,000)")
    ap.add_argument("--data", type=Path, default=Path("/tmp/rag-million"), help="the folder (kept; default /tmp/rag-million)")
    ap.add_argument("--measure-only", action="store_true", help="only measure against an existing filled --data")
    ap.add_argument("--build-only", action="store_true", help="fill the folder, do not measure")
    ap.add_argument("--resume", action="store_true", help="continue a build that was stopped, up to --passages")
    ap.add_argument("--build-via", choices=("embedded", "server"), default="embedded",
                    help="write with an embedded client on the folder (default) or through a `chroma run` server on it")
    ap.add_argument("--copies-per-write", type=int, default=8,
                    help="copies of the base transcripts per write call (default 8: ~6,200 passages)")
    ap.add_argument("--base", type=Path, default=C.DEV_TRANSCRIPTS, help="transcripts the passages are built from")
    ap.add_argument("--qfile", type=Path, default=C.DEV_QUESTIONS, help="questions (JSON lines) the clients ask")
    ap.add_argument("--questions", type=int, default=50, help="questions asked once each (default 50)")
    ap.add_argument("--cold-reps", type=int, default=3, help="cold `rag ask` processes after the clients (default 3)")
    ap.add_argument("--cold-question", default="What did the Prime Minister say about students?")
    ap.add_argument("--client-cap-mb", type=float, default=12_000, help="stop a client past this RSS (default 12,000 MB)")
    ap.add_argument("--client-timeout-s", type=float, default=5400)
    ap.add_argument("--while-writing", action="store_true",
                    help="measure a client opened while a writer adds transcripts through the server (see the top)")
    ap.add_argument("--writing-s", type=float, default=300, help="with --while-writing: how long the writer writes")
    ap.add_argument("--settle-s", type=float, default=120, help="with --while-writing: how long the client goes on after it")
    ap.add_argument("--out", help="write the JSON here (default: stdout)")
    ap.add_argument("--client", help=argparse.SUPPRESS)
    ap.add_argument("--watch-client", help=argparse.SUPPRESS)
    ap.add_argument("--writer", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.client or args.watch_client or args.writer:
        if args.client:
            out = client(args.client, args.cache, str(args.qfile), args.questions)
        elif args.watch_client:
            out = watch_client(args.watch_client, args.cache, str(args.qfile), args.questions, args.writing_s, args.settle_s)
        else:
            out = writer(args.writer, args.data, args.base, args.writing_s)
        print(json.dumps(out), flush=True)
        os._exit(0)  # skip native libraries' teardown once the figures are out (see query_bench)

    # a TERM (e.g. `kill PID` of a long build) unwinds like an error: a server we started is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    data = args.data
    result: dict = {"machine": C.machine(), "data": str(data)}
    if args.while_writing:
        data.mkdir(parents=True, exist_ok=True)
        result["while_writing"] = while_writing(args, data)
        C.emit(result, args.out)
        return 0
    if args.measure_only:
        if not (data / "chroma").is_dir():
            ap.error("--measure-only needs --data DIR: a folder this script filled (it holds chroma/)")
        built = json.loads((data / "build.json").read_text()) if (data / "build.json").exists() else {}
        result["build"], result["passages"] = built.get("build"), built.get("passages")
    else:
        if args.resume and not (data / "chroma").is_dir():
            ap.error("--resume needs --data DIR: a folder whose build was stopped (it holds chroma/)")
        if (data / "chroma").exists() and not args.resume:
            ap.error(f"{data}/chroma exists already: use --measure-only or --resume, or another --data")
        data.mkdir(parents=True, exist_ok=True)
        C.log(f"data in {data} (load {C.loadavg()}, available {mem_available_mb()} MB)")
        result["build"] = build(args, data)
        result["passages"] = args.passages
    if not args.build_only:
        C.log(f"measuring against {data} (load {C.loadavg()}, available {mem_available_mb()} MB)")
        result["measure"] = measure(data, args)
        c = (result["measure"].get("second_client") or {}).get("client") or {}
        if c.get("passages") is not None:
            result["passages"] = c["passages"]  # what the client found
    result["table"] = table(result)
    C.emit(result, args.out)
    print(result["table"], file=sys.stderr)
    C.log(f"data folder kept: {data}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
