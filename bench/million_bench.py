"""Issue 12, point 4: a store of (by default) 1,000,000 passages behind a `chroma run` server,
and what an app process pays to open it and answer from it.

    # build a server folder and measure (the folder is kept: its path is printed and in the JSON)
    .venv/bin/python bench/million_bench.py [--passages 1000000] [--data DIR] [--out r.json]
    # measure again, later, against an existing filled folder (a fresh server, a fresh client)
    .venv/bin/python bench/million_bench.py --measure-only --data DIR [--out r.json]

Build: the base transcripts (default: the development hearings, eval/qmsum-committee-val) are
ingested for real once (parsed, chunked, embedded with the bundled model) into a scratch embedded
store; their stored passages and vectors are then written to a `chroma run` server on 127.0.0.1
(its data in ``DIR/chroma``) with rag's own write path (``Store.write_transcripts`` with
``RAG_CHROMA_URL`` set, as `rag ingest` does in server mode): the originals first, then copies
under distinct transcript ids (``copyNNNN/<id>``) whose vectors carry Gaussian noise
(sigma 0.01 per dimension, renormalised), one write per copy, until exactly N passages. Nothing
is re-embedded. The build's own figures go to ``DIR/build.json``.

Measure (both modes, after the build): the server is (re)started on ``DIR/chroma`` and a fresh
client process (``--client``) opens the store as the app does: ``Engine(settings)``, the first
index load (``engine.index()``: passages, vectors, BM25 indexes, speakers), then ``warm()`` (the
model; no sentence pre-embedding at this size); then it asks ``--questions`` development questions
once each, timed from the very first. The client reports its own peak RSS (VmHWM); the parent
samples the client's and the server's RSS every 0.5 s, and stops the client if it passes
``--client-cap-mb`` (the figure at that moment is reported, with the phase it was in: an honest
"does not fit" rather than a machine that swaps or an OOM kill of someone else's work). Also:
the server's RSS after the questions, the folder's size on disk, and the 1-minute load average
before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
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


# ---------------------------------------------------------------------------- build


def base_passages(folder: Path, work: Path):
    """Ingest ``folder`` for real into a scratch embedded store; its passages, vectors, transcripts."""
    import rag
    from rag._embed import Embedder
    from rag._store import Store

    embedder = Embedder(C.MODEL)
    settings = C.settings_for(store=work / "base")
    report = rag.ingest([folder], settings, embedder=embedder)
    if report.failed:
        raise SystemExit(f"ingest of {folder} failed: {[f.reason for f in report.failed]}")
    passages, vectors = Store(settings).all_passages(with_vectors=True)
    transcripts, _, _ = C.parse_and_chunk(folder, embedder)
    return passages, vectors, {t.id: t for t in transcripts}


def base_from_server(url: str, folder: Path):
    """For --resume: the base passages and vectors as the build stored them (copy 0, the
    originals), and the base transcripts parsed again from ``folder`` (nothing is embedded)."""
    from rag._parse import parse_bytes, transcript_id_for
    from rag._store import Store

    import numpy as np

    store = Store(C.settings_for(chroma_url=url))
    transcripts = {}
    for f in C.transcript_files(folder):
        t = parse_bytes(f.read_bytes(), transcript_id_for(f, Path(folder)), f.suffix)
        transcripts[t.id] = t
    passages, vectors = [], []
    for tid in sorted(transcripts):
        ps, vs = store.all_passages(transcript=tid, with_vectors=True)
        if not ps:
            raise SystemExit(f"--resume: the server holds no passages of base transcript {tid}: was it built from {folder}?")
        passages += ps
        vectors.append(vs)
    return passages, np.concatenate(vectors), transcripts


def resume_point(url: str) -> tuple[int, int]:
    """(passages stored, next copy number) of a build that was stopped: passages of a write that
    was cut short (no manifest record points at them) are removed first, as an ingest would."""
    from rag._store import Store

    store = Store(C.settings_for(chroma_url=url), create=True)
    manifest = store.manifest()
    removed = store.repair(manifest)
    copies = [int(tid[4:8]) for tid in manifest if tid.startswith("copy")]
    C.log(f"resuming: {store.count():,} passages, {len(manifest):,} transcripts, last copy {max(copies, default=0)}, "
          f"{removed} passages of an unfinished write removed")
    return store.count(), max(copies, default=0) + 1


def fill(url: str, base: list, vectors, transcripts: dict, target: int, noise: float = 0.01, seed: int = 0,
         log_every_s: float = 60.0, written: int = 0, copy: int = 0, checkpoint=None) -> dict:
    """Write exactly ``target`` passages to the server's store with ``Store.write_transcripts``:
    the base passages, then noisy copies under distinct transcript ids, one write call per copy
    (``written``/``copy``: where a stopped build resumes; ``checkpoint(figures)`` is called at
    each progress line, so that a stopped build's figures so far are kept)."""
    import numpy as np

    from rag._store import Store

    store = Store(C.settings_for(chroma_url=url), create=True)
    by_t: dict[str, list[int]] = {}
    for i, p in enumerate(base):
        by_t.setdefault(p.transcript, []).append(i)
    start, cos = written, []
    t0 = last = time.perf_counter()
    progress = []
    while written < target:
        rng = np.random.default_rng((seed, copy))  # per copy: the same noise whether resumed or not
        items = []
        for tid in sorted(by_t):
            if written >= target:
                break
            idx = by_t[tid][: target - written]
            items.append(C.copy_item(tid, idx, copy, base, vectors, transcripts, rng, noise, cos))
            written += len(idx)
        store.write_transcripts(items)
        copy += 1
        now = time.perf_counter()
        if now - last >= log_every_s or written >= target:
            last = now
            rate = (written - start) / (now - t0)
            progress.append({"passages": written, "s": round(now - t0, 1), "load1": C.loadavg()[:1]})
            C.log(f"filled {written:,}/{target:,} passages in {now - t0:.0f} s ({rate:,.0f}/s, load {C.loadavg()[0]}, "
                  f"available {mem_available_mb()} MB)")
            if checkpoint:
                checkpoint({"resumed_at": start, "passages": written, "write_s": round(now - t0, 1), "progress": progress})
    write_s = time.perf_counter() - t0
    return {"passages": store.count(), "transcripts": len(store.manifest()), "copies": copy, "write_s": round(write_s, 1),
            "passages_per_s": round((target - start) / write_s, 1) if write_s else None, "resumed_at": start, "noise_sigma": noise,
            "mean_cos_to_original": round(sum(cos) / len(cos), 4) if cos else 1.0, "progress": progress}


# ---------------------------------------------------------------------------- the client (a child process)


def index_parts_mb(index) -> dict:
    """The in-memory view's array parts, by size (MB): the passage vectors and the two BM25
    indexes' sparse score matrices. The rest of the view (passages as Python objects, the filter
    rows, the vocabulary, ...) is the RSS growth minus these."""
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


def client(url: str, qfile: str, limit: int) -> dict:
    """Runs in a fresh process: open the store as the app does, ask, report."""
    def phase(name: str) -> None:
        print(PHASE_PREFIX + name, file=sys.stderr, flush=True)

    phase("imports")
    t_start = time.perf_counter()
    from rag import Engine

    import_s = time.perf_counter() - t_start
    settings = C.settings_for(chroma_url=url)
    rss_before = C.rss_mb_of_self()
    phase("engine")
    t0 = time.perf_counter()
    engine = Engine(settings)
    create_s = time.perf_counter() - t0
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
    # what every question pays at most once a second to notice another process's ingest
    fp_ms = []
    for _ in range(3):
        t = time.perf_counter()
        engine.store.fingerprint()
        fp_ms.append((time.perf_counter() - t) * 1000)
    phase("done")
    out = {"passages": n, "import_s": round(import_s, 2), "engine_create_s": round(create_s, 2),
           "index_load_s": round(index_s, 1), "warm_s": round(warm_s, 1),
           "open_s": round(create_s + index_s + warm_s, 1), "questions": len(qs), "answered": len(times),
           "errors": errors, "abstained": abstained,
           "ask_first_ms": round(times[0], 1) if times else None,
           "ask_p50_ms": round(C.pct(times, 50), 1) if times else None,
           "ask_p95_ms": round(C.pct(times, 95), 1) if times else None,
           "ask_max_ms": round(max(times), 1) if times else None,
           "rss_before_engine_mb": rss_before.get("VmRSS"), "rss_after_index_mb": rss_after_index.get("VmRSS"),
           "index_parts_mb": parts, "transcripts": len(engine.transcripts()), "fingerprint_ms": round(C.median(fp_ms), 1)}
    out.update({"client_" + k: v for k, v in C.rss_mb_of_self().items()})
    return out


# ---------------------------------------------------------------------------- measure


class _Running:
    """A server this script did not start (--url): measured as it is, not restarted."""

    def __init__(self, url: str, pid: int | None) -> None:
        self.url, self.pid = url, pid

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def measure(data: Path, qfile: Path, limit: int, cap_mb: float, timeout_s: float,
            url: str | None = None, server_pid: int | None = None) -> dict:
    """A fresh server on ``data/chroma`` (or the running one at ``url``) and a fresh client
    process; the figures."""
    result: dict = {"data": str(data), "load_before": C.loadavg(), "mem_available_before_mb": mem_available_mb(),
                    "store_size_mb": du_mb(data / "chroma"), "fresh_server": url is None}
    server_cm = _Running(url, server_pid) if url else C.ChromaServer(data / "chroma", log_path=data / "chroma-server.log")
    with server_cm as server:
        spid = server.pid if url else server.proc.pid
        result["server_rss_idle_mb"] = proc_status(spid).get("VmRSS") if spid else None
        cmd = [sys.executable, __file__, "--client", server.url, "--qfile", str(qfile), "--questions", str(limit)]
        t0 = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        state = {"phase": "start", "stderr": []}

        def read_stderr() -> None:
            for line in child.stderr:
                if line.startswith(PHASE_PREFIX):
                    state["phase"] = line[len(PHASE_PREFIX):].strip()
                    state.setdefault("phase_at_s", {})[state["phase"]] = round(time.perf_counter() - t0, 1)
                    C.log(f"client: {state['phase']} at {time.perf_counter() - t0:.0f} s (RSS {proc_status(child.pid).get('VmRSS')} MB, "
                          f"load {C.loadavg()[0]})")
                else:
                    state["stderr"].append(line)

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        peak_client = peak_server = 0.0
        stopped = None
        while child.poll() is None:
            c = proc_status(child.pid).get("VmRSS", 0.0)
            s = proc_status(spid).get("VmRSS", 0.0) if spid else 0.0
            peak_client, peak_server = max(peak_client, c), max(peak_server, s)
            elapsed = time.perf_counter() - t0
            if c > cap_mb or elapsed > timeout_s:
                why = f"client RSS {c:,.0f} MB > cap {cap_mb:,.0f} MB" if c > cap_mb else f"still running after {timeout_s:.0f} s"
                stopped = {"reason": why, "phase": state["phase"], "after_s": round(elapsed, 1), "client_rss_mb": c,
                           "server_rss_mb": s, "mem_available_mb": mem_available_mb(), "load1": C.loadavg()[:1]}
                C.log(f"stopping the client: {why} (phase {state['phase']})")
                child.kill()
                break
            time.sleep(0.5)
        stdout, _ = child.communicate()
        reader.join(timeout=5)
        result["client_wall_s"] = round(time.perf_counter() - t0, 1)
        result["phases_at_s"] = state.get("phase_at_s", {})
        result["sampled_peak_client_rss_mb"] = peak_client
        result["sampled_peak_server_rss_mb"] = peak_server
        after = proc_status(spid) if spid else {}
        result["server_rss_after_mb"] = after.get("VmRSS")
        result["server_peak_rss_mb"] = after.get("VmHWM")
        if stopped:
            result["client_stopped"] = stopped
        elif child.returncode != 0:
            result["client_error"] = "".join(state["stderr"])[-3000:]
        else:
            result["client"] = json.loads(stdout.strip().splitlines()[-1])
    result["load_after"] = C.loadavg()
    return result


def table(r: dict) -> str:
    b, m = r.get("build") or {}, r.get("measure") or {}
    c = m.get("client") or {}
    rows = [("passages", f"{r.get('passages', 0):,}")]
    if b.get("write_s"):
        rows += [("build: write through the server", f"{b['write_s']:,} s ({b['passages_per_s']:,} passages/s), "
                  f"{b['transcripts']:,} transcripts")]
    elif b.get("runs"):
        last = b["runs"][-1]
        rows += [("build (not finished)", f"{last['passages']:,} passages written after {last['write_s']:,} s of its last run")]
    if not m.get("fresh_server", True):
        rows += [("server", "the running server at --url, measured as it was (not restarted)")]
    rows += [("store size on disk (chroma folder)", f"{m.get('store_size_mb', 0):,} MB")]
    if c:
        rows += [("client open: Engine() + first index load + warm()", f"{c['open_s']} s "
                  f"(index load {c['index_load_s']} s, warm {c['warm_s']} s)"),
                 ("ask p50 / p95 from the first question", f"{c['ask_p50_ms']} / {c['ask_p95_ms']} ms "
                  f"({c['answered']} of {c['questions']} questions, first {c['ask_first_ms']} ms, {c['errors']} errors)"),
                 ("client peak RSS (VmHWM)", f"{c['client_peak_rss_mb']:,} MB (after imports {c['rss_before_engine_mb']:,} MB; "
                  f"vectors {c['index_parts_mb']['vectors']:,} MB, BM25 {c['index_parts_mb']['bm25'] + c['index_parts_mb']['bm25_answer']:,.1f} MB)"),
                 ("manifest fingerprint read (once a second at most)", f"{c['fingerprint_ms']} ms over {c['transcripts']:,} transcripts")]
    if m.get("client_stopped"):
        s = m["client_stopped"]
        rows += [("client", f"stopped in phase `{s['phase']}` after {s['after_s']} s: {s['reason']}")]
    if m.get("client_error"):
        rows += [("client", "failed: " + m["client_error"].strip().splitlines()[-1][:200])]
    rows += [("server RSS idle / after the questions / peak", f"{m.get('server_rss_idle_mb')} / {m.get('server_rss_after_mb')} / "
              f"{m.get('server_peak_rss_mb')} MB"),
             ("1-minute load average before / after", f"{(m.get('load_before') or [None])[0]} / {(m.get('load_after') or [None])[0]}")]
    return "| figure | measured |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=1_000_000, help="passages to write (default 1,000,000)")
    ap.add_argument("--data", type=Path, help="server data folder (default: a new folder under /tmp, kept)")
    ap.add_argument("--measure-only", action="store_true", help="only measure a fresh client against an existing filled --data")
    ap.add_argument("--build-only", action="store_true", help="fill the folder, do not measure")
    ap.add_argument("--resume", action="store_true", help="continue a build that was stopped (--data DIR) up to --passages")
    ap.add_argument("--base", type=Path, default=C.DEV_TRANSCRIPTS, help="transcripts the passages are built from")
    ap.add_argument("--qfile", type=Path, default=C.DEV_QUESTIONS, help="questions (JSON lines) the client asks")
    ap.add_argument("--questions", type=int, default=50, help="questions asked once each (default 50)")
    ap.add_argument("--client-cap-mb", type=float, default=10_000, help="stop the client past this RSS (default 10,000 MB)")
    ap.add_argument("--client-timeout-s", type=float, default=3600)
    ap.add_argument("--out", help="write the JSON here (default: stdout)")
    ap.add_argument("--url", help="with --measure-only: measure against this running server instead of a fresh one on --data "
                    "(e.g. while a build is still writing to it; the figures say so)")
    ap.add_argument("--server-pid", type=int, help="with --url: the server's process id, for its RSS")
    ap.add_argument("--client", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.client:
        print(json.dumps(client(args.client, str(args.qfile), args.questions)), flush=True)
        os._exit(0)  # skip native libraries' teardown once the figures are out (see query_bench)

    # a TERM (e.g. `kill PID` of a long build) unwinds like an error: the server we started is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result: dict = {"machine": C.machine()}
    if args.measure_only:
        if not args.data or not (args.data / "chroma").is_dir():
            ap.error("--measure-only needs --data DIR: a folder this script filled (it holds chroma/)")
        data = args.data
        built = json.loads((data / "build.json").read_text()) if (data / "build.json").exists() else {}
        result["build"] = built.get("build")
        result["passages"] = built.get("passages")
    else:
        data = args.data or Path(tempfile.mkdtemp(prefix=f"rag-million-{args.passages}-", dir="/tmp"))
        if args.resume and not (data / "chroma").is_dir():
            ap.error("--resume needs --data DIR: a folder whose build was stopped (it holds chroma/)")
        if (data / "chroma").exists() and not args.resume:
            ap.error(f"{data}/chroma exists already: use --measure-only or --resume, or another --data")
        data.mkdir(parents=True, exist_ok=True)
        C.log(f"server data in {data} (load {C.loadavg()}, available {mem_available_mb()} MB)")
        earlier = json.loads((data / "build.json").read_text()).get("build", {}) if (data / "build.json").exists() else {}
        with C.ChromaServer(data / "chroma", log_path=data / "chroma-server.log") as server:
            t0 = time.perf_counter()
            if args.resume:
                written, copy = resume_point(server.url)
                base, vectors, transcripts = base_from_server(server.url, args.base)
            else:
                written, copy = 0, 0
                work = Path(tempfile.mkdtemp(prefix="rag-million-base-"))
                try:
                    base, vectors, transcripts = base_passages(args.base, work)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
            embed_s = time.perf_counter() - t0
            C.log(f"{len(base):,} base passages from {len(transcripts)} transcripts in {embed_s:.0f} s")
            runs = earlier.get("runs", []) if args.resume else []

            def checkpoint(run: dict) -> None:  # the figures so far, for a build that is stopped
                (data / "build.json").write_text(json.dumps({"passages": run["passages"], "complete": False,
                                                             "build": {"base_embed_s": earlier.get("base_embed_s", round(embed_s, 1)),
                                                                       "runs": runs + [run]}}, indent=2))

            built = fill(server.url, base, vectors, transcripts, args.passages, written=written, copy=copy, checkpoint=checkpoint)
            built.update(base_passages=len(base), base_transcripts=len(transcripts),
                         base_embed_s=earlier.get("base_embed_s", round(embed_s, 1)),
                         server_rss_after_fill_mb=proc_status(server.proc.pid).get("VmRSS"),
                         load_after_fill=C.loadavg())
            # the whole build's figures: earlier (stopped) runs' writes plus this one's
            built["runs"] = runs + [{k: built[k] for k in ("resumed_at", "passages", "write_s", "progress")}]
            if len(built["runs"]) > 1:
                built["write_s"] = round(sum(r["write_s"] for r in built["runs"]), 1)
                built["passages_per_s"] = round(built["passages"] / built["write_s"], 1) if built["write_s"] else None
        if built["passages"] != args.passages:
            raise SystemExit(f"the server holds {built['passages']} passages, not {args.passages}")
        (data / "build.json").write_text(json.dumps({"passages": args.passages, "complete": True, "build": built}, indent=2))
        result["build"], result["passages"] = built, args.passages
    result["data"] = str(data)
    if not args.build_only:
        C.log(f"measuring a fresh client against {data} (load {C.loadavg()}, available {mem_available_mb()} MB)")
        result["measure"] = measure(data, args.qfile, args.questions, args.client_cap_mb, args.client_timeout_s,
                                    url=args.url if args.measure_only else None, server_pid=args.server_pid)
        if (result["measure"].get("client") or {}).get("passages") is not None:
            result["passages"] = result["measure"]["client"]["passages"]  # what the client found
    result["table"] = table(result)
    C.emit(result, args.out)
    print(result["table"], file=sys.stderr)
    C.log(f"server data folder kept: {data}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
