"""Encode timings under the OpenMP settings of this process's environment (OMP_WAIT_POLICY and
the torch thread count must be fixed before torch loads, so ingest_bench runs this in a
subprocess per setting). Prints JSON: median ms for one query, a batch of sentences (what an
answer embeds) and a batch of passages (what ingest embeds)."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def main() -> None:
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    threads = int(os.environ.get("BENCH_THREADS", "0"))
    from rag._embed import Embedder
    from rag._text import sentence_spans

    e = Embedder(C.MODEL, threads=threads or None)
    e.encode(["warm up"])
    text = (C.CORPUS / "nhs-impact-amar-shah-interview.txt").read_text(encoding="utf-8")
    sentences = [text[a:b] for a, b in sentence_spans(text)][:40]
    _, passages, _ = C.parse_and_chunk(C.CORPUS, e)
    texts = [p.embed_text for p in passages]
    query = "What can we learn from Bangladesh?"
    out = {}
    for name, fn, n in (("query_ms", lambda: e.encode([query]), reps * 4), ("40_sentences_ms", lambda: e.encode(sentences), reps),
                        (f"{len(texts)}_passages_ms", lambda: e.encode(texts), reps)):
        ts = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1000)
        out[name] = round(statistics.median(ts), 1)
    import torch

    out["torch_threads"] = torch.get_num_threads()
    out["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY", "")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
