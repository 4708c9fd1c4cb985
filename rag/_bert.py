"""A small pure-torch BERT sentence encoder for sentence-transformers model folders.

Why it exists: cold start. ``import sentence_transformers`` pulls in transformers, sklearn and more,
which costs seconds on every CLI run. This module imports only torch, numpy, tokenizers and
safetensors, loads a plain BERT sentence-transformers folder (Transformer -> mean Pooling ->
optional Normalize) directly, and produces the same unit vectors. ``BertEncoder.load`` returns None
for any folder it cannot reproduce exactly, so callers can fall back to sentence-transformers.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tokenizers import Tokenizer
from torch import nn

from ._light import batch_ids, plain_bert_folder


class _Layer(nn.Module):
    """One post-LayerNorm BERT encoder layer; submodule names mirror the checkpoint keys."""

    def __init__(self, hidden: int, inter: int, heads: int, eps: float):
        super().__init__()
        self.heads = heads
        self.attention = nn.ModuleDict({
            "self": nn.ModuleDict({n: nn.Linear(hidden, hidden) for n in ("query", "key", "value")}),
            "output": nn.ModuleDict({"dense": nn.Linear(hidden, hidden), "LayerNorm": nn.LayerNorm(hidden, eps=eps)}),
        })
        self.intermediate = nn.ModuleDict({"dense": nn.Linear(hidden, inter)})
        self.output = nn.ModuleDict({"dense": nn.Linear(inter, hidden), "LayerNorm": nn.LayerNorm(hidden, eps=eps)})

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, length, hidden = x.shape
        proj = self.attention["self"]
        q, k, v = (proj[n](x).view(b, length, self.heads, -1).transpose(1, 2) for n in ("query", "key", "value"))
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(b, length, hidden)
        out = self.attention["output"]
        x = out["LayerNorm"](out["dense"](ctx) + x)
        y = self.output["dense"](F.gelu(self.intermediate["dense"](x)))
        return self.output["LayerNorm"](y + x)


class _Bert(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        hidden, eps = cfg["hidden_size"], cfg.get("layer_norm_eps", 1e-12)
        self.embeddings = nn.ModuleDict({
            "word_embeddings": nn.Embedding(cfg["vocab_size"], hidden),
            "position_embeddings": nn.Embedding(cfg["max_position_embeddings"], hidden),
            "token_type_embeddings": nn.Embedding(cfg.get("type_vocab_size", 2), hidden),
            "LayerNorm": nn.LayerNorm(hidden, eps=eps),
        })
        layer = lambda: _Layer(hidden, cfg["intermediate_size"], cfg["num_attention_heads"], eps)  # noqa: E731
        self.encoder = nn.ModuleDict({"layer": nn.ModuleList(layer() for _ in range(cfg["num_hidden_layers"]))})

    def forward(self, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Mean of the final hidden states over the tokens where ``keep`` is True (padding excluded)."""
        x = self.states(ids, keep)
        w = keep.unsqueeze(-1).to(torch.float32)
        return (x.float() * w).sum(1) / w.sum(1).clamp(min=1e-9)

    def states(self, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """The final hidden states (batch, tokens, hidden)."""
        emb = self.embeddings
        positions = torch.arange(ids.shape[1])
        x = emb["word_embeddings"](ids) + emb["position_embeddings"](positions) + emb["token_type_embeddings"].weight[0]
        x = emb["LayerNorm"](x)
        # (batch, 1, 1, keys), True = attend: padding keys are never attended. Without padding, no
        # mask at all lets SDPA pick its fused kernel.
        mask = None if bool(keep.all()) else keep[:, None, None, :]
        for layer in self.encoder["layer"]:
            x = layer(x, mask)
        return x


def linear_weights_to_bf16(model: nn.Module) -> None:
    """Store the Linear layers' weights in bfloat16 once. Autocast casts them to bfloat16 anyway,
    but it forgets its casts when the ``with`` block ends, so each call would convert all the
    weights again: a fixed cost that dominates a one-question encode. The products are the same
    (the same rounding of the same weights); layer norms, softmax and embeddings stay float32."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.to(torch.bfloat16)


class BertEncoder:
    """Mean-pooled, L2-normalised BERT sentence vectors, the same as sentence-transformers gives."""

    def __init__(self, model: _Bert, tokenizer: Tokenizer, max_seq_length: int, dimension: int,
                 lowercase: bool, bf16: bool):
        self.model, self.tokenizer = model, tokenizer
        self.max_seq_length, self.dimension = max_seq_length, dimension
        self._lowercase, self._bf16 = lowercase, bf16

    @classmethod
    def load(cls, path: str, *, bf16: bool = False) -> BertEncoder | None:
        """None when the folder is not a plain BERT sentence-transformers model we can run."""
        try:
            found = plain_bert_folder(path)
            if found is None:
                return None
            folder, cfg, max_len, lowercase, tokenizer = found
            model = _Bert(cfg)
            weights = {k.removeprefix("bert."): v for k, v in load_file(str(folder / "model.safetensors")).items()}
            weights = {k: v for k, v in weights.items() if not k.startswith("pooler.") and k != "embeddings.position_ids"}
            model.load_state_dict(weights)  # strict: any missing/unexpected/mis-shaped key -> unsupported
        except Exception:  # missing/malformed files, odd configs, weight mismatches (tokenizers raises bare Exception)
            return None
        model.eval().requires_grad_(False)
        if bf16:
            linear_weights_to_bf16(model)
        return cls(model, tokenizer, max_len, cfg["hidden_size"], lowercase, bf16)

    def encode_spans(self, texts: list[str], spans: list[list[tuple[int, int]]], batch_size: int = 32
                     ) -> tuple[np.ndarray, list[list[np.ndarray | None]]]:
        """``encode``, and from the same forward pass, for each text, the unit mean of the final
        hidden states over the tokens inside each of its character ``spans`` (None for a span
        with no token: cut off by truncation, or empty)."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        pooled: list[list[np.ndarray | None]] = []
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._bf16):
            for start, encodings, ids, keep in self._batches(texts, batch_size):
                x = self.model.states(ids, keep).float()
                w = keep.unsqueeze(-1).to(torch.float32)
                out[start:start + len(encodings)] = F.normalize((x * w).sum(1) / w.sum(1).clamp(min=1e-9), dim=-1).numpy()
                states = x.numpy()
                for row, e in enumerate(encodings):
                    offs = np.asarray(e.offsets, dtype=np.int64).reshape(-1, 2)
                    real = ~np.asarray(e.special_tokens_mask, dtype=bool) & (offs[:, 1] > offs[:, 0])
                    vecs: list[np.ndarray | None] = []
                    for lo, hi in spans[start + row]:
                        sel = real & (offs[:, 0] >= lo) & (offs[:, 1] <= hi)
                        if sel.any():
                            v = states[row, : len(sel)][sel].mean(0)
                            vecs.append((v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32))
                        else:
                            vecs.append(None)
                    pooled.append(vecs)
        return out, pooled

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Unit-normalised float32 vectors (n, dimension), in the order given; each batch padded to its longest."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._bf16):
            for start, encodings, ids, keep in self._batches(texts, batch_size):
                pooled = self.model(ids, keep)
                out[start:start + len(encodings)] = F.normalize(pooled.float(), dim=-1).numpy()
        return out

    def _batches(self, texts: list[str], batch_size: int):
        """(start, encodings, ids, keep) per batch of ``texts``, each padded to its longest
        (``rag._light.batch_ids``, as torch tensors)."""
        for start in range(0, len(texts), batch_size):
            encodings, ids, keep = batch_ids(self.tokenizer, texts[start:start + batch_size], self._lowercase)
            yield start, encodings, torch.from_numpy(ids), torch.from_numpy(keep)
