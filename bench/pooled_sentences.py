"""Experiment (issue #12, option b): sentence vectors pooled from the passage's own forward pass
instead of a second encoding of each sentence.

For every passage of a store: one forward pass of its ``embed_text`` (as at ingest), then each
quotable sentence's vector is the mean of the last hidden states over that sentence's tokens
(found by the tokenizer's character offsets), normalised. A sentence with no tokens in the
embedded text (a question shortened for embedding) keeps its separately encoded vector; they
are counted. Reports the cosine between pooled and separately encoded vectors, and the time of
the pooled pass against the passage encode alone, then writes the pooled vectors into a copy of
the store, for ``rag eval`` to compare answers.

    .venv/bin/python bench/pooled_sentences.py STORE COPY [--out r.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

import _common as C


def _offset(p) -> tuple[int, int]:
    """Where ``p.text`` and ``p.embed_question`` start in ``p.embed_text`` (-1: not there)."""
    asked = (f"{p.question_speaker}: {p.embed_question}" if p.question_speaker else p.embed_question) if p.embed_question else ""
    q_at = (len(p.question_speaker) + 2 if p.question_speaker else 0) if p.embed_question else -1
    t_at = (len(asked) + 1 if asked else 0) + (len(p.speaker) + 2 if p.speaker else 0)
    assert p.embed_text[t_at:t_at + len(p.text)] == p.text
    return t_at, q_at


def pooled(passages: list, embedder, batch_size: int = 32) -> tuple[list, float, int]:
    import torch

    from rag import _answer

    enc = embedder.model
    m = enc.model
    out: list = [None] * len(passages)
    missing = 0
    order = sorted(range(len(passages)), key=lambda i: -len(passages[i].embed_text))
    t0 = time.perf_counter()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=enc._bf16):
        for at in range(0, len(order), batch_size):
            idx = order[at:at + batch_size]
            encs = enc.tokenizer.encode_batch([passages[i].embed_text for i in idx])
            lengths = torch.tensor([len(e.ids) for e in encs])
            ids = torch.zeros((len(encs), int(lengths.max())), dtype=torch.long)
            for row, e in zip(ids, encs):
                row[:len(e.ids)] = torch.tensor(e.ids)
            keep = torch.arange(ids.shape[1]) < lengths[:, None]
            emb = m.embeddings
            x = emb["word_embeddings"](ids) + emb["position_embeddings"](torch.arange(ids.shape[1])) + emb["token_type_embeddings"].weight[0]
            x = emb["LayerNorm"](x)
            mask = None if bool(keep.all()) else keep[:, None, None, :]
            for layer in m.encoder["layer"]:
                x = layer(x, mask)
            x = x.float().numpy()
            for row, (i, e) in enumerate(zip(idx, encs)):
                p = passages[i]
                t_at, q_at = _offset(p)
                offs = np.array(e.offsets)
                special = np.array(e.special_tokens_mask, dtype=bool)
                rows = []
                for field in _answer.FIELDS:
                    base = t_at if field == "text" else q_at
                    src = p.text if field == "text" else p.question
                    for a, b in _answer.passage_sentences(p, field):
                        ok = False
                        if base >= 0 and (field == "text" or p.embed_question.startswith(src[:b]) or src[a:b] in p.embed_question):
                            if field == "question" and src[a:b] in p.embed_question:
                                a2 = p.embed_question.find(src[a:b])
                                lo, hi = base + a2, base + a2 + (b - a)
                            else:
                                lo, hi = base + a, base + b
                            sel = (~special) & (offs[:, 0] >= lo) & (offs[:, 1] <= hi) & (offs[:, 1] > offs[:, 0])
                            if sel.any():
                                v = x[row][: len(sel)][sel].mean(0)
                                rows.append(v / max(np.linalg.norm(v), 1e-12))
                                ok = True
                        if not ok:
                            rows.append(None)
                            missing += 1
                out[i] = rows
    return out, time.perf_counter() - t0, missing


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store")
    ap.add_argument("copy")
    ap.add_argument("--out")
    ap.add_argument("--no-timing", action="store_true", help="skip timing the separate encodes")
    args = ap.parse_args(argv)

    from rag import _derived
    from rag._embed import Embedder
    from rag._store import Store

    copy = Path(args.copy)
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(args.store, copy)
    settings = C.settings_for(store=copy)
    store = Store(settings, create=True)
    manifest = store.manifest()
    passages, _ = store.all_passages(manifest=manifest)
    ids = [f"{p.chunk_id}@{manifest[p.transcript].version}" for p in passages]
    encoded = store.sentence_vectors(ids)
    embedder = Embedder(C.MODEL)
    embedder.encode(["warm up"] * 8)
    passage_s = sentences_s = None
    if not args.no_timing:
        t = time.perf_counter()
        embedder.encode([p.embed_text for p in passages], batch_size=32)
        passage_s = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        embedder.encode(list(dict.fromkeys(s for p in passages for s in _derived.sentence_texts(p))), batch_size=32)
        sentences_s = round(time.perf_counter() - t, 1)
    pools, pooled_s, missing = pooled(passages, embedder)
    cos, mats = [], []
    for cid, rows in zip(ids, pools):
        ref = encoded[cid]
        if not rows:
            mats.append(ref)
            continue
        mat = np.array([r if r is not None else ref[j] for j, r in enumerate(rows)], dtype=np.float32).reshape(len(rows), -1)
        cos += [float(mat[j] @ ref[j]) for j, r in enumerate(rows) if r is not None]
        mats.append(mat)
    _derived.write(store._sentences, ids, passages, [manifest[p.transcript].version for p in passages], mats)
    result = {"store": args.store, "passages": len(passages), "sentences": len(cos) + missing, "not_in_embedded_text": missing,
              "cos_pooled_vs_encoded": {"mean": round(float(np.mean(cos)), 4), "p5": round(float(np.percentile(cos, 5)), 4),
                                        "min": round(float(np.min(cos)), 4)},
              "passage_encode_s": passage_s, "sentence_encode_s": sentences_s,
              "pooled_pass_s": round(pooled_s, 1), "load": C.loadavg()}
    C.emit(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
