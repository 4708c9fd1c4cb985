"""Benchmark 4: cold start. The whole `rag ask` process (subprocess wall time), and the chat UI
answering its first question after launch.

    .venv/bin/python bench/coldstart_bench.py [--quick] [--reps 5] [--ui-reps 3] [--out r.json]

UI: a headless Chromium (Debian's, driven by Playwright) is started first, as a user's browser
would already be open; then the clock starts, ``streamlit run ui/app.py`` is launched headless on
a free port with RAG_STORE set, the page is opened as soon as the server answers, the question is
typed into the chat box, and the clock stops when the answer (``.rag-answer``) is shown.
If the UI cannot be driven (no chat box or no answer within the time limit), the figure falls
back to time-to-first-HTTP-200 plus an Engine warm-up measured in a fresh process, and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as C

QUESTION = "What can we learn from Bangladesh?"
DEV_QUESTION = "What did the Prime Minister say about students?"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False",
               STREAMLIT_BROWSER_GATHER_USAGE_STATS="false", **extra)
    return env


def rag_ask(store: Path, question: str, reps: int, cwd: Path, **env: str) -> dict:
    """``reps`` whole ``rag ask`` processes (median); ``env``: extra environment (e.g. RAG_SNAPSHOT)."""
    times, answer = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        proc = subprocess.run([str(C.VENV_BIN / "rag"), "ask", question, "--store", str(store), "--json"],
                              capture_output=True, text=True, cwd=cwd, env=clean_env(**env))
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise RuntimeError(f"rag ask failed ({proc.returncode}): {proc.stderr[-2000:]}")
        answer = json.loads(proc.stdout)
    return {"process_s": round(C.median(times), 2), "runs_s": [round(t, 2) for t in times],
            "abstained": answer["abstained"], "timings_ms": answer.get("timings_ms")}


def warm_in_fresh_process(store: Path, question: str) -> float:
    code = (
        "import time; t0=time.perf_counter(); from rag import Engine, load_settings; "
        f"e=Engine(load_settings(store={str(store)!r})); e.warm(); e.ask({question!r}); print(time.perf_counter()-t0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env())
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return float(proc.stdout.strip().splitlines()[-1])


def ui_first_answer(store: Path, question: str, reps: int, work: Path, timeout_s: float = 120,
                    launcher: str = "streamlit") -> dict:
    """App launch -> first answer shown in a browser. ``launcher``: "streamlit" (``streamlit run
    ui/app.py``: the engine is made and warmed up on the first visit) or "rag-ui" (``rag ui``:
    warmed up as the server starts)."""
    from playwright.sync_api import sync_playwright

    if launcher not in ("streamlit", "rag-ui"):
        raise ValueError(f"unknown launcher {launcher!r}; valid: streamlit, rag-ui")

    runs, fallback_runs, notes = [], [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for r in range(reps):
                port = C.free_port()
                url = f"http://127.0.0.1:{port}"
                log_path = work / f"streamlit-{r}.log"
                cmd = [sys.executable, "-m", "streamlit", "run", str(C.ROOT / "ui" / "app.py"),
                       "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
                       "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
                if launcher == "rag-ui":
                    cmd = [sys.executable, "-m", "rag.cli", "ui", "--port", str(port), "--host", "127.0.0.1", "--headless"]
                with open(log_path, "wb") as log:
                    t0 = time.monotonic()
                    proc = subprocess.Popen(cmd, cwd=work, env=clean_env(RAG_STORE=str(store)), stdout=log, stderr=subprocess.STDOUT)
                    try:
                        row = {}
                        while not C.http_ok(f"{url}/_stcore/health", timeout=1):
                            if proc.poll() is not None or time.monotonic() - t0 > timeout_s:
                                raise RuntimeError(f"streamlit did not come up: {log_path.read_text(errors='replace')[-1500:]}")
                            time.sleep(0.05)
                        row["http_200_s"] = round(time.monotonic() - t0, 2)
                        context = browser.new_context(viewport={"width": 1280, "height": 900})
                        page = context.new_page()
                        page.set_default_timeout(timeout_s * 1000)
                        try:
                            page.goto(url)
                            box = page.get_by_test_id("stChatInputTextArea")
                            box.wait_for()
                            row["chat_box_s"] = round(time.monotonic() - t0, 2)
                            box.fill(question)
                            box.press("Enter")
                            page.locator(".rag-answer").first.wait_for()
                            row["first_answer_s"] = round(time.monotonic() - t0, 2)
                            row["answer_text"] = page.locator(".rag-answer").first.inner_text()[:200]
                            runs.append(row)
                        except Exception as exc:  # the UI is not drivable: fall back, and say why
                            notes.append(f"UI not drivable ({type(exc).__name__}: {str(exc)[:200]})")
                            row["fallback_s"] = round(row["http_200_s"] + warm_in_fresh_process(store, question), 2)
                            fallback_runs.append(row)
                        finally:
                            context.close()
                    finally:
                        proc.terminate()
                        try:
                            proc.wait(timeout=15)
                        except subprocess.TimeoutExpired:
                            proc.kill()
                            proc.wait(timeout=15)
        finally:
            browser.close()
    out: dict = {"launcher": launcher, "runs": runs + fallback_runs, "notes": sorted(set(notes))}
    if runs:
        out["method"] = "browser: launch -> answer shown"
        for key in ("http_200_s", "chat_box_s", "first_answer_s"):
            out[key] = round(C.median([r[key] for r in runs]), 2)
    else:
        out["method"] = "fallback: time to first HTTP 200 + Engine warm-up and one answer in a fresh process"
        out["first_answer_s"] = round(C.median([r["fallback_s"] for r in fallback_runs]), 2)
        out["http_200_s"] = round(C.median([r["http_200_s"] for r in fallback_runs]), 2)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one run of each")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--ui-reps", type=int, default=3)
    ap.add_argument("--no-ui", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args(argv)

    import rag
    from rag._embed import Embedder

    reps, ui_reps = (1, 1) if args.quick else (args.reps, args.ui_reps)
    result: dict = {"machine": C.machine(), "load_before": C.loadavg(), "quick": args.quick}
    work = Path(tempfile.mkdtemp(prefix="rag-bench-cold-"))
    try:
        embedder = Embedder(C.MODEL)
        seed = C.settings_for(store=work / "seed")
        rag.ingest([C.CORPUS], seed, embedder=embedder)
        C.log(f"rag ask on the demo corpus x{reps} (load {C.loadavg()})")
        result["rag_ask_seed"] = rag_ask(seed.store, QUESTION, reps, work)
        if not args.quick:
            dev = C.settings_for(store=work / "dev")
            rag.ingest([C.DEV_TRANSCRIPTS], dev, embedder=embedder)
            C.log(f"rag ask on the development transcripts x{reps} (load {C.loadavg()})")
            result["rag_ask_dev"] = rag_ask(dev.store, DEV_QUESTION, reps, work)
        if not args.no_ui:
            C.log(f"UI first answer x{ui_reps} (load {C.loadavg()})")
            result["ui_seed"] = ui_first_answer(seed.store, QUESTION, ui_reps, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return C.finish(result, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
