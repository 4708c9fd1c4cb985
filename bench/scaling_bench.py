"""Ingest time against input size for the input shapes that once took quadratic time (issue 14,
point 3): many reader-comment lines, JSON turns whose text key is written as an escape, one very
long word, and many speakers. Each shape is parsed and chunked (what ingest does before
embedding, with the bundled model's tokenizer counting tokens, garbage collection paused as
ingest pauses it) at sizes n, 2n and 4n; a linear step costs about 2x per doubling. Wall time
(median of 5) and CPU time of the process (the least of 5: on a machine shared with other work,
wall time includes waiting for a core). Nothing is asserted: the figures go to docs/BENCHMARKS.md.

    .venv/bin/python bench/scaling_bench.py [--out FILE.json] [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import _common as C  # noqa: F401  (sets the offline environment, puts the project on the path)


def comments(n: int) -> bytes:
    body = "PP: What did you think?\n\nAS: It went well, thank you.\n\nComments\n\n"
    body += "".join(f"Reader {i}\n1 January 2024\nI agree with point {i}.\n\n" for i in range(n))
    return body.encode()


def escaped_json(n: int) -> bytes:
    turns = ",".join(f'{{"speaker": "S{i % 2}", "te\\u0078t": "Turn number {i} says something."}}' for i in range(n))
    return f'{{"turns": [{turns}]}}'.encode()


def long_word(n: int) -> bytes:
    # "ab/" repeated: many word pieces in one whitespace-free run (a run of one letter is one piece)
    return ("PP: What is it?\n\nAS: " + ("ab/" * (n // 3 + 1))[:n] + "\n").encode()


def speakers(n: int) -> bytes:
    return "".join(f"Speaker {i}: Is this turn {i} a question?\n\n" for i in range(n)).encode()


SHAPES = {
    "comment lines": (comments, ".txt", 4000),
    "escaped JSON text keys": (escaped_json, ".json", 2000),
    "one long word (characters)": (long_word, ".txt", 50_000),
    "speakers": (speakers, ".txt", 5000),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out")
    ap.add_argument("--quick", action="store_true", help="smaller sizes, one run each")
    args = ap.parse_args()

    from rag._chunk import chunk_transcript
    from rag._embed import Embedder
    from rag._ingest import _gc_paused
    from rag._parse import parse_bytes

    embedder = Embedder("all-MiniLM-L6-v2")
    chunk_transcript(parse_bytes(speakers(50), "warm.txt"), embedder.count_tokens, embedder.max_tokens)  # load the tokenizer
    result = {"shapes": []}
    for name, (make, suffix, n0) in SHAPES.items():
        n0 = n0 // 4 if args.quick else n0
        rows = []
        for n in (n0, 2 * n0, 4 * n0):
            data = make(n)
            times, cpu = [], []
            for _ in range(1 if args.quick else 5):
                t0, c0 = time.perf_counter(), time.process_time()
                with _gc_paused():  # as ingest does
                    t = parse_bytes(data, f"bench{suffix}")
                with _gc_paused():
                    passages = chunk_transcript(t, embedder.count_tokens, embedder.max_tokens)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            rows.append({"n": n, "bytes": len(data), "seconds": round(statistics.median(times), 3),
                         "cpu_seconds": round(min(cpu), 3), "passages": len(passages)})
        ratios = [round(b["seconds"] / a["seconds"], 2) if a["seconds"] else None for a, b in zip(rows, rows[1:])]
        cpu_ratios = [round(b["cpu_seconds"] / a["cpu_seconds"], 2) if a["cpu_seconds"] else None for a, b in zip(rows, rows[1:])]
        result["shapes"].append({"shape": name, "sizes": rows, "doubling_ratios": ratios, "cpu_doubling_ratios": cpu_ratios})
        print(f"{name:28} " + "  ".join(f"n={r['n']}: {r['seconds']:.3f}s ({r['cpu_seconds']:.3f}s CPU)" for r in rows)
              + f"  x2 -> {ratios}, CPU {cpu_ratios}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
