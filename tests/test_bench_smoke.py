"""The benchmark scripts work: `bench/run_all.py --quick` runs every benchmark on tiny inputs
(the demo corpus, stores of a few dozen passages, one repetition, the UI once) and renders the
report. No timing is asserted: only that every figure was measured and the report says so.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from conftest import ROOT


def _numbers(d, path=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _numbers(v, f"{path}{k}.")
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            yield f"{path}{k}", v


def test_run_all_quick(tmp_path):
    out, raw = tmp_path / "BENCHMARKS.md", tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run_all.py"), "--quick", "--out", str(out), "--json", str(raw)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "Traceback" not in proc.stderr

    data = json.loads(raw.read_text())
    meta, results = data["meta"], data["results"]
    assert meta["quick"] is True and meta["machine"]["cores"] >= 1 and meta["machine"]["cpu_model"]
    assert set(results) == {"ingest", "query", "coldstart", "ready"}
    for name, r in results.items():
        assert len(r["load_before"]) == 3 and len(r["load_after"]) == 3, name
        for key, value in _numbers(r):
            assert math.isfinite(value), f"{name}.{key} = {value}"

    ing = results["ingest"]
    for corpus in ("dev", "big"):
        r = ing[corpus]
        assert r["passages"] > 0 and r["chars"] > 0 and r["naive_chunks"] > 0
        assert r["ours_s"] > 0 and r["ceiling_s"] > 0 and r["naive_s"] > 0 and r["reingest_s"] > 0
        assert len(r["runs_s"]["ours"]) == 1
    assert ing["big"]["passages"] >= 2 * ing["dev"]["passages"]  # copies with distinct ids all went in

    q = results["query"]
    assert q["seed"]["errors"] == 0 and q["seed"]["ask"]["p50_ms"] > 0 and q["seed"]["naive"]["p50_ms"] > 0
    sizes = q["sizes"]
    assert [sizes[n]["passages"] for n in sorted(sizes, key=int)] == sorted(int(n) for n in sizes)  # exactly N
    assert all(r["errors"] == 0 and r["ask"]["p50_ms"] > 0 and r["retrieve"]["p50_ms"] > 0 for r in sizes.values())
    conc = next(r["concurrency"] for r in sizes.values() if "concurrency" in r)
    assert conc["errors"] == 0 and conc["1 thread"]["questions_per_s"] > 0 and conc["8 threads"]["questions_per_s"] > 0
    mem = next(r["memory"] for r in sizes.values() if "memory" in r)
    assert "error" not in mem and mem["peak_rss_mb"] > 100
    assert q["server"]["errors"] == 0 and q["server"]["ask"]["p50_ms"] > 0

    cold = results["coldstart"]
    assert cold["rag_ask_seed"]["process_s"] > 0 and cold["rag_ask_seed"]["abstained"] is False
    ui = cold["ui_seed"]
    assert ui["first_answer_s"] > 0 and ui["runs"]

    ready = results["ready"]["stores"]
    assert [r["probe"]["passages"] for r in ready] == [14, 60]
    for r in ready:  # every store opened, answered from its first question, and no sentence was embedded
        p = r["probe"]
        assert "error" not in p and p["questions"] > 0 and p["p50_ms"] > 0 and p["VmHWM"] > 100
        assert p["encoded_sentences"] == 0 and p["encoded_texts"] >= p["questions"]
        assert r["cold_ask"]["process_s"] > 0 and r["disk_mb_per_1000"] > 0
        # side by side: without the snapshot (built from Chroma), and a fresh process reading it
        assert r["cold_ask_no_snapshot"]["process_s"] > 0 and p["snapshot_write_s"] > 0 and p["snapshot_mb"] > 0
        assert r["open"]["snapshot_used"] is True and r["open"]["first_ask_s"] > 0
        assert r["add_one"]["files"] == ["added"] and 0 < r["add_one"]["snapshot_s"] < r["add_one"]["ingest_s"]

    md = out.read_text()
    for heading in ("# Benchmarks", "## Machine and load", "## Targets", "## 1. Ingest throughput", "## 2. Re-ingest",
                    "## 3. Query latency", "## 4. Cold start", "## 5. Memory", "## 6. Concurrency", "## 9. Ready at once"):
        assert heading in md, heading
    assert "quick smoke mode" in md and meta["machine"]["cpu_model"] in md
    assert "| figure | target | measured | met |" in md


def test_run_all_keeps_the_sections_it_does_not_write(tmp_path):
    """bench/run_all.py rewrites docs/BENCHMARKS.md from the benchmarks it runs; the sections of
    the benchmarks it does not run (7: scaling_bench.py, 8: many_transcripts.py) must survive."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import run_all
    finally:
        sys.path.remove(str(ROOT / "bench"))
    page = tmp_path / "BENCHMARKS.md"
    page.write_text("# Benchmarks\n\nold intro\n\n## 1. Ingest throughput\n\nold figures\n\n"
                    "## 7. Scaling\n\nseven\n\n## 8. Many transcripts\n\n| a | b |\n")
    run_all.write_page(page, "# Benchmarks\n\nnew intro\n\n## 1. Ingest throughput\n\nnew figures\n")
    assert page.read_text() == ("# Benchmarks\n\nnew intro\n\n## 1. Ingest throughput\n\nnew figures\n\n"
                                "## 7. Scaling\n\nseven\n\n## 8. Many transcripts\n\n| a | b |\n")
    run_all.write_page(page, page.read_text())  # nothing doubled on the next rewrite
    assert page.read_text().count("## 7.") == 1


@pytest.mark.slow
def test_many_transcripts_bench_runs_small(tmp_path):
    """bench/many_transcripts.py (the 100,000-transcript store, docs/BENCHMARKS.md section 8) on a
    few dozen files: every step ran and left the store as it should (one file changed and one
    deleted by `ingest --prune`, then a rebuild after a simulated kill). No timing is asserted."""
    n, raw = 36, tmp_path / "many.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "many_transcripts.py"), "--n", str(n), "--keep",
                           str(tmp_path / "work"), "--out", str(raw)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    r = json.loads(raw.read_text())
    assert r["transcripts"] == n and r["passages"] == n
    assert f"({n} transcripts, {n} passages)" in r["stats_first_line"]
    assert r["ask_top5_right_template"] == 3  # 36 files from 12 templates: the 3 that answer the question come first
    done = r["prune_last_line"].split(";")[0].removeprefix("done: ").split(", ")
    assert sorted(done) == sorted(["1 updated", f"{n - 2} unchanged", "1 removed"]), r["prune_last_line"]
    assert r["repair_removed"] == 0
    assert r["recover_reembedded"] == n - 1 and r["passages_after"] == n - 1 and r["transcripts_after"] == n - 1
    assert any(f"rebuilt the vector index: {n - 1} passages of {n - 1} transcripts" in x for x in r["recover_notes"])
    for key in ("ingest_s", "stats_s", "ask_s", "prune_s", "repair_s", "recover_s"):
        assert r[key] > 0, key

    # the reads again on the same store, also with a "before" checkout (here the same one)
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "many_transcripts.py"), "--n", str(n), "--keep",
                           str(tmp_path / "work"), "--reuse", "--before", str(ROOT), "--reads-only", "--out", str(raw)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    r = json.loads(raw.read_text())
    for timings in (r["open_timings"], r["before"]["open_timings"]):
        assert timings["transcripts"] == n - 1 and timings["index_files_problem"] is None
        assert timings["manifest_first_s"] > 0 and timings["cache_mb"] is not None
    assert r["stats_uncached_s"] > 0 and r["before"]["stats_s"] > 0 and r["before"]["ask_s"] > 0
    assert "prune_s" not in r and "recover_s" not in r


def test_million_bench_tiny(tmp_path):
    """bench/million_bench.py at 300 passages: builds a `chroma run` folder through rag's store
    code, measures a fresh client against it, and measures again with --measure-only on the same
    folder. Only that every figure is there and the store holds exactly the passages asked for."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False")
    script, data = ROOT / "bench" / "million_bench.py", tmp_path / "data"
    common = ["--base", str(ROOT / "corpus"), "--qfile", str(ROOT / "eval" / "seed.jsonl"), "--questions", "3"]

    def run(*args):
        out = tmp_path / "r.json"
        proc = subprocess.run([sys.executable, str(script), *args, *common, "--data", str(data), "--out", str(out)],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        assert "Traceback" not in proc.stderr
        r = json.loads(out.read_text())
        assert "| store size on disk (chroma folder) |" in proc.stderr  # the Markdown table is printed
        assert ("| first_client: peak RSS (VmHWM) |" in proc.stderr) == ("measure" in r)
        return r

    part = run("--passages", "200", "--build-only")
    assert part["passages"] == 200 and "measure" not in part
    assert json.loads((data / "build.json").read_text())["complete"] is True
    first = run("--passages", "300", "--resume")  # a stopped (or smaller) build continues where it was
    b = first["build"]
    assert first["passages"] == 300 and b["passages"] == 300 and b["copies"] > 1 and b["write_s"] > 0
    assert [r["resumed_at"] for r in b["runs"]] == [0, 200] and b["runs"][-1]["passages"] == 300
    assert b["transcripts"] == b["copies"]  # the demo corpus is one transcript: one per copy, none lost or doubled
    assert 0.9 < b["mean_cos_to_original"] < 1.0  # the copies' vectors are perturbed, not identical
    assert (data / "chroma" / "chroma.sqlite3").exists() and (data / "build.json").exists()

    again = run("--measure-only")
    assert again["passages"] == 300 and again["build"] == b  # the build's figures are read back
    for r in (first, again):
        m = r["measure"]
        # a first client builds the local snapshot cache, a second reads it
        for name, cached in (("first_client", False), ("second_client", True)):
            x = m[name]
            assert "client_stopped" not in x and "client_error" not in x, x
            c = x["client"]
            assert c["passages"] == 300 and c["questions"] == 3 and c["answered"] == 3 and c["errors"] == 0
            assert c["open_s"] > 0 and c["ask_p50_ms"] > 0 and c["ask_p95_ms"] >= c["ask_p50_ms"]
            assert c["index_load_s"] >= 0 if cached else c["index_load_s"] > 0  # (300 passages from the cache: rounds to 0.0 s)
            assert c["client_peak_rss_mb"] > 100 and c["snapshot_in_cache_before"] is cached
        assert m["server_rss_after_mb"] > 10 and m["store_size_mb"] > 0
        assert len(m["load_before"]) == 3 and len(m["load_after"]) == 3
        for key, value in _numbers(r):
            assert math.isfinite(value), f"{key} = {value}"

    # a second build on a filled folder is refused, and nothing in it is touched
    proc = subprocess.run([sys.executable, str(script), "--passages", "300", *common, "--data", str(data)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "exists already" in proc.stderr, proc.stderr[-2000:]
    assert json.loads((data / "build.json").read_text())["build"] == b
