"""The same BERT sentence encoder as ``rag._bert``, as a numpy forward pass, for questions.

Why: a cold ``rag ask`` (and any process that only answers) encodes a handful of short texts,
and importing torch costs about a second of it. This module needs numpy, tokenizers and
safetensors only. It reads the same plain-BERT sentence-transformers folders ``rag._bert``
accepts (``LightEncoder.load`` returns None for anything else), in float32: vectors within
cosine 1e-5 of sentence-transformers' (tests/test_light.py). Passages and sentences at ingest
still go through torch (batched, bf16 where the CPU has it: far faster for many texts).
"""

from __future__ import annotations

import numpy as np


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to ~1.2e-7 (Numerical Recipes' erfc Chebyshev fit), elementwise; numpy has none."""
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (
        0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    erfc = t * np.exp(poly)
    return np.where(x >= 0, 1.0 - erfc, erfc - 1.0)


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def plain_bert_folder(path: str):
    """(model folder, its config.json, max sequence length, lower-case the input?, tokenizer) of a
    plain BERT sentence-transformers model (Transformer -> mean Pooling -> optional Normalize,
    safetensors weights, a tokenizer.json), the kind this module and ``rag._bert`` can run; None
    for anything else. Raises on malformed files (callers treat that as None too). The stored
    tokenizer.json truncates at 128 and pads to a fixed length: the tokenizer returned truncates
    at max_seq_length (special tokens included, like sentence-transformers) and does not pad (each
    batch is padded to its longest by ``batch_ids``)."""
    import json
    from pathlib import Path

    from tokenizers import Tokenizer

    def read(p: Path):
        return json.loads(p.read_text(encoding="utf-8"))

    root = Path(path)
    specs = read(root / "modules.json")
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in specs]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return None
    pooling = read(root / specs[1]["path"] / "config.json")
    # legacy pooling_mode_* booleans, or the newer single "pooling_mode" key ("mean" / ["mean"])
    modes = pooling.get("pooling_mode") or [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v]
    if modes not in ("mean", ["mean"], ["pooling_mode_mean_tokens"]):
        return None
    folder = root / specs[0].get("path", "")
    cfg = read(folder / "config.json")
    if (cfg.get("model_type") != "bert" or cfg.get("hidden_act") != "gelu"
            or cfg.get("position_embedding_type", "absolute") != "absolute"):
        return None
    if not (folder / "model.safetensors").is_file() or not (folder / "tokenizer.json").is_file():
        return None
    st_cfg = read(folder / "sentence_bert_config.json") if (folder / "sentence_bert_config.json").is_file() else {}
    max_len = int(st_cfg.get("max_seq_length") or min(512, cfg["max_position_embeddings"]))
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=max_len)
    tokenizer.no_padding()
    return folder, cfg, max_len, bool(st_cfg.get("do_lower_case")), tokenizer


def batch_ids(tokenizer, texts: list[str], lowercase: bool):
    """Tokenize a batch: (encodings, ids (n, longest) int64 padded with 0, keep (n, longest) bool:
    the real tokens). The pad id does not matter: padding is masked."""
    encodings = tokenizer.encode_batch([t.lower() if lowercase else t for t in texts])
    lengths = np.array([len(e.ids) for e in encodings])
    ids = np.zeros((len(encodings), int(lengths.max())), dtype=np.int64)
    for row, e in zip(ids, encodings):
        row[: len(e.ids)] = e.ids
    keep = np.arange(ids.shape[1])[None, :] < lengths[:, None]
    return encodings, ids, keep


class LightEncoder:
    """Mean-pooled, L2-normalised BERT sentence vectors in numpy (float32)."""

    def __init__(self, weights: dict[str, np.ndarray], cfg: dict, tokenizer, max_seq_length: int, lowercase: bool):
        self.w, self.tokenizer = weights, tokenizer
        self.layers = int(cfg["num_hidden_layers"])
        self.heads = int(cfg["num_attention_heads"])
        self.eps = float(cfg.get("layer_norm_eps", 1e-12))
        self.dimension = int(cfg["hidden_size"])
        self.max_seq_length = max_seq_length
        self._lowercase = lowercase

    @classmethod
    def load(cls, path: str) -> "LightEncoder | None":
        """None when the folder is not a plain BERT sentence-transformers model (``plain_bert_folder``)."""
        from safetensors.numpy import load_file

        try:
            found = plain_bert_folder(path)
            if found is None:
                return None
            folder, cfg, max_len, lowercase, tokenizer = found
            raw = load_file(str(folder / "model.safetensors"))
            weights = {k.removeprefix("bert."): np.ascontiguousarray(v, dtype=np.float32) for k, v in raw.items()}
            need = ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                    "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]
            for i in range(int(cfg["num_hidden_layers"])):
                pre = f"encoder.layer.{i}."
                need += [pre + n + s for n in ("attention.self.query", "attention.self.key", "attention.self.value",
                                               "attention.output.dense", "attention.output.LayerNorm",
                                               "intermediate.dense", "output.dense", "output.LayerNorm")
                         for s in (".weight", ".bias")]
            if any(k not in weights for k in need):
                return None
        except Exception:  # missing/malformed files, odd configs (tokenizers raises bare Exception)
            return None
        # the Linear weights transposed once: x @ W.T without a copy per call
        for k in list(weights):
            if k.endswith(".weight") and weights[k].ndim == 2 and "embeddings" not in k:
                weights[k] = np.ascontiguousarray(weights[k].T)
        return cls(weights, cfg, tokenizer, max_len, lowercase)

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Unit vectors (n, dimension), float32. BLAS runs on one thread here: for a few short
        texts the products are small, and OpenBLAS's threads, spinning for each other on a busy
        machine, made one question take 300 ms to 2 s instead of about 10 (measured at load 9)."""
        limit = _one_blas_thread()
        if limit is None:
            return self._encode(texts, batch_size)
        with limit:
            return self._encode(texts, batch_size)

    def _encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            _, ids, keep = batch_ids(self.tokenizer, texts[start:start + batch_size], self._lowercase)
            pooled = self._forward(ids, keep)
            out[start:start + len(ids)] = pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return out

    def _forward(self, ids: np.ndarray, keep: np.ndarray) -> np.ndarray:
        w, eps = self.w, self.eps
        b, length = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:length][None]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        h = self.heads
        d = self.dimension // h
        bias = np.where(keep, 0.0, -1e9).astype(np.float32)[:, None, None, :]  # padding keys never attended
        for i in range(self.layers):
            p = f"encoder.layer.{i}."

            def lin(v: np.ndarray, name: str) -> np.ndarray:
                return v @ w[p + name + ".weight"] + w[p + name + ".bias"]

            q, k, v = (lin(x, f"attention.self.{n}").reshape(b, length, h, d).transpose(0, 2, 1, 3)
                       for n in ("query", "key", "value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(d)) + bias
            scores -= scores.max(-1, keepdims=True)
            att = np.exp(scores)
            att /= att.sum(-1, keepdims=True)
            ctx = (att @ v).transpose(0, 2, 1, 3).reshape(b, length, h * d)
            x = _layer_norm(lin(ctx, "attention.output.dense") + x, w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"], eps)
            mid = lin(x, "intermediate.dense")
            mid = 0.5 * mid * (1.0 + _erf(mid / np.float32(np.sqrt(2.0))))
            x = _layer_norm(lin(mid, "output.dense") + x, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        m = keep[..., None].astype(np.float32)
        return (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)


_CONTROLLER: list = []


def _one_blas_thread():
    """A context that runs numpy's BLAS on one thread (threadpoolctl), or None without it."""
    if not _CONTROLLER:
        try:
            from threadpoolctl import ThreadpoolController

            _CONTROLLER.append(ThreadpoolController())
        except Exception:  # not installed, or an unknown BLAS: run as configured
            _CONTROLLER.append(None)
    ctl = _CONTROLLER[0]
    return ctl.limit(limits=1, user_api="blas") if ctl is not None else None
