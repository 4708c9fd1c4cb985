"""Settings: read once at the edge (flags > RAG_* environment > rag.toml > defaults), passed down."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ._errors import ConfigError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
CHUNKER_VERSION = 7  # bump when passages, their embedded text or the data stored with them change (5: questions stored once; 6: and sentence vectors; 7: roles read with generic meeting wording only)


# Fitted by `rag fit` on ../shared/data/qmsum-committee-train (24 hearings, 284 questions),
# cross-validated by hearing; see docs/EVALUATION.md for the run, the folds and the ablation.
FITTED_WEIGHTS: dict[str, float] = {
    "dense": 7.3562,
    "lexical": 4.604,
    "lexical_answer": -1.7186,
    "lexical_rr": 2.7578,
    "speaker": 1.9356,
    "asker": 4.4684,
    "role_kind": 4.4684,  # never varies in the training split: tied to the larger of "speaker"/"asker" (rag._fit.TIED)
    "transcript": 4.0403,
    "short": 1.0697,
    "log_words": 6.5835,
}


class RankingSettings(BaseModel):
    """How candidate passages are gathered and scored (rag/_rank.py)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    weights: dict[str, float] = Field(
        default_factory=lambda: dict(FITTED_WEIGHTS),
        description="Weight of each ranking feature (rag._rank.FEATURES); fitted with `rag fit`.",
    )
    pool: int = Field(50, ge=1, le=1000, description="Candidates taken from each of the dense and the lexical search.")
    rr_k: float = Field(10.0, gt=0, description="k of the reciprocal-rank features, k / (k + rank - 1).")
    short_words: int = Field(10, ge=1, description="Answers shorter than this many words count as short (a feature).")
    transcript_top: int = Field(3, ge=1, description="Best candidates of a transcript averaged for its `transcript` feature.")
    per_answer: int = Field(2, ge=1, description="Parts of one split answer allowed in the top k.")
    exact_max: int = Field(20000, ge=0, description="Up to this many passages an embedded store's dense search is exact, over the "
                           "vectors the engine holds, instead of Chroma's approximate index (which a fresh process "
                           "loads on its first question: docs/BENCHMARKS.md, section 9); 0: always Chroma's when unfiltered.")

    @field_validator("weights")
    @classmethod
    def _known(cls, v: dict[str, float]) -> dict[str, float]:
        from ._rank import check_weights

        check_weights(v)
        return v


# What a transcript may be called in a question ("What is this interview about?", "in the episode
# with X"): generic words for recorded conversations, no show's or institution's name
TRANSCRIPT_WORDS = ("interview", "conversation", "episode", "podcast", "hearing", "meeting", "session", "transcript",
                    "talk", "chat", "discussion", "debate", "recording", "show")


class PlanningSettings(BaseModel):
    """Rules of the query-planning step (rag/_query.py) that can be switched off; each is measured
    on and off in docs/EVALUATION.md (ablation)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    strip_request: bool = Field(True, description="Embed the question without its request phrasing ('Summarize the discussion about').")
    title_neutral: bool = Field(True, description="Leave titles of the speakers the question names out of the lexical query.")
    scope: bool = Field(True, description="A question naming a transcript (title, file, 'the interview with X') searches only it.")
    transcript_words: list[str] = Field(
        default_factory=lambda: list(TRANSCRIPT_WORDS), min_length=1,
        description="What a question may call a transcript ('this interview', 'the episode with X'); add your own, "
        "e.g. 'deposition', 'webinar' (plurals are understood).")
    overview: bool = Field(True, description="'What is this interview about?' is answered with the transcript's overview: its "
                           "participants, its introduction and the questions asked in it (answer.overview_questions).")


class AnswerSettings(BaseModel):
    """How the answer's sentences are chosen from the retrieved passages (rag/_answer.py). Values
    fitted on the training split by bench/fit_selection.py (docs/EVALUATION.md, "Answers")."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    budget_words: int = Field(120, ge=10, le=1000, description="Length budget of an extractive answer, in words.")
    max_passages: int = Field(2, ge=1, le=50, description="Top passages whose sentences may be quoted.")
    summary_passages: int = Field(3, ge=1, le=50, description="Top passages quoted for a question asking for a summary or a discussion.")
    per_passage: int = Field(6, ge=1, description="Best sentences taken from one passage (each may bring a neighbour).")
    w_cosine: float = Field(0.35, description="Weight of a sentence's cosine with the question.")
    w_overlap: float = Field(0.65, description="Weight of its share of the question's (idf-weighted) words.")
    w_type: float = Field(0.5, description="Bonus for carrying the expected answer type (a year, an amount, a name).")
    type_gate: float = Field(0.15, description="... given only to a sentence whose relevance (the two weighted terms above) "
                             "reaches this: an unrelated sentence with a year in it does not answer 'when'.")
    w_rank: float = Field(0.1, description="Penalty per rank of the sentence's passage.")
    w_position: float = Field(0.0, description="Penalty per sentence before it in its passage (up to ten).")
    max_repeat: float = Field(0.3, ge=0, le=1, description="A sentence whose content words were already quoted beyond this share is left out.")
    question_penalty: float = Field(1.0, description="Penalty for quoting the asker's words rather than the answer.")
    relative_bar: float = Field(1.0, ge=0, description="Sentences scoring below best - bar * |best| are not taken.")
    part_covered: float = Field(0.5, ge=0, le=1, description="A part of a question asking several things is answered when a "
                                "quoted sentence holds this share of its (idf-weighted) words; else its best sentence is added ...")
    part_words: int = Field(40, ge=0, description="... within this many words beyond the length budget (0: parts get no room of their own).")
    follow_bar: float = Field(2.0, ge=0, description="The sentence after a chosen one comes too when it scores within this share of the best (0: never).")
    overview_questions: int = Field(8, ge=1, le=50, description="Questions quoted in a transcript's overview "
                                    "('What is this interview about?'), spread evenly over it when it has more.")
    key_points: int = Field(6, ge=1, le=50, description="Answers quoted (one sentence each, the one closest to its exchange) "
                            "for 'What are the key points of this interview?', spread evenly over it.")
    said_points: int = Field(6, ge=0, description="'What did X say?' (no subject) gets the key points of what X says when X "
                             "takes at least this many turns (0: never; fewer turns: the question is answered as any other).")
    overview_transcripts: int = Field(3, ge=1, le=20, description="Transcripts given an overview each when a question asks "
                                      "what 'the interview' is about and names none; beyond, their titles are listed.")


class RefusalSettings(BaseModel):
    """When to say the transcripts do not answer a question (rag/_decide.py, rag/_refusal.py)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    model: str = Field(
        "fitted", pattern="^(fitted|threshold)$",
        description="'fitted': the logistic model below, with abstain_threshold as an evidence floor; 'threshold': the floor alone.")
    # Fitted by scripts/fit_refusal.py on 2026-12-07 on ../shared/data/qmsum-committee-train (284 questions
    # asked of the whole store, of the other hearings only, and of the half of the other hearings least
    # like their own), cross-validated by hearing, stores of chunker version 7;
    # figures in docs/EVALUATION.md, "Refusal". "speaker_only" never varies there: such questions are
    # answered by rule (rag/_decide.py).
    weights: dict[str, float] = Field(
        default_factory=lambda: {
            "evidence": -5.3178, "score1": -0.4497, "margin": -0.0730, "coverage": -0.7410, "absent": 1.2635,
            "unknown_names": 1.0027, "type_missing": -0.6193, "speaker_only": 0.0000,
        },
        description="Weight of each refusal feature (rag._refusal.FEATURES); fitted by scripts/fit_refusal.py.",
    )
    evidence_passages: int = Field(3, ge=1, le=50, description="Top passages whose best sentence is the evidence an answer is judged on.")
    bias: float = Field(12.0196, description="Bias of the logistic model.")
    # The two premise settings were fitted by scripts/fit_premise.py on
    # ../shared/data/qmsum-committee-train: the most speaker-swapped questions corrected with at
    # most 2.5 % of the real questions corrected (docs/EVALUATION.md, "Premise").
    premise_margin: float = Field(
        0.2, ge=0, description="A question naming a speaker is answered with the words of others instead, saying so, when "
        "the best of the other speakers' sentences beats the named speaker's by this much evidence ...")
    premise_named_max: float = Field(
        0.45, ge=0, description="... and the named speaker's best sentence has less evidence than this.")
    threshold: float = Field(
        0.8910, ge=0, le=1, description="Refuse when the probability that the transcripts do not answer reaches this.")

    @field_validator("weights")
    @classmethod
    def _known(cls, v: dict[str, float]) -> dict[str, float]:
        from ._refusal import check_weights

        check_weights(v)
        return v


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", env_nested_delimiter="__", extra="forbid", validate_assignment=True)

    store: Path = Field(Path(".rag"), description="Folder of the embedded Chroma store.")
    chroma_url: str | None = Field(None, description="Chroma server URL (http://host:port); overrides --store.")
    chroma_timeout: float = Field(60.0, gt=0, description="Seconds a Chroma server may take to answer one request (server mode).")
    model: str = Field(DEFAULT_MODEL, description="Embedding model: a known name or a sentence-transformers folder.")
    k: int = Field(5, ge=1, le=50, description="Passages retrieved per question.")
    llm: str | None = Field(None, description="Optional LLM as provider:model for init_chat_model, e.g. ollama:llama3.1.")
    llm_base_url: str | None = Field(None, description="Base URL of an OpenAI-compatible server for the LLM.")
    max_file_mb: float = Field(20.0, gt=0, description="Files larger than this are rejected at ingest.")
    batch_size: int = Field(32, ge=1, description="Embedding batch size.")
    sentence_vectors: Literal["pooled", "encoded"] = Field(
        "encoded", description="How ingest makes the sentence vectors answers are scored with: 'encoded' (each sentence "
        "embedded on its own) or 'pooled' (the mean of the passage's own token vectors over the sentence: no second encoding).")
    snapshot: bool = Field(
        True, description="Keep what questions need from the passages (BM25 indexes, vectors, speakers, idf) in a snapshot "
        "written at ingest and read by every process that opens the store, instead of rebuilding it from Chroma each time "
        "(rag/_snapshot.py).")
    cache_dir: Path | None = Field(
        None, description="Server mode: local folder for the snapshot of a Chroma server's store (default ~/.cache/rag).")
    abstain_threshold: float = Field(
        0.35, description="Evidence floor: answers whose best evidence scores below this are abstained on (docs/EVALUATION.md, Refusal)."
    )
    feedback_file: Path | None = Field(None, description="JSONL file for thumbs up/down (default: <store>/feedback.jsonl).")
    upload_max_mb: float = Field(5.0, gt=0, description="Size cap of one uploaded file in the app.")
    question_max_chars: int = Field(2000, ge=10, description="Longest question the app accepts (a longer one gets a message).")
    answer: AnswerSettings = Field(default_factory=AnswerSettings, description="Sentence selection of extractive answers.")
    planning: PlanningSettings = Field(default_factory=PlanningSettings, description="Query-planning rules.")
    ranking: RankingSettings = Field(default_factory=RankingSettings, description="Candidate pools and fitted ranking weights.")
    refusal: RefusalSettings = Field(default_factory=RefusalSettings, description="The fitted refusal model.")

    @field_validator("chroma_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings)

    @property
    def feedback_path(self) -> Path:
        return self.feedback_file or (self.store / "feedback.jsonl")

    def describe_store(self) -> str:
        return self.chroma_url or str(self.store)


def load_settings(config: str | Path | None = None, **overrides: Any) -> Settings:
    """Build settings from defaults, a TOML file (``--config``, RAG_CONFIG or ./rag.toml),
    RAG_* environment variables and explicit overrides (flags), in rising priority.

    Every problem is a ConfigError naming its source: a settings file that was asked for (by
    --config or RAG_CONFIG) and is missing, one that is not UTF-8 or not TOML, a ``rag`` key that is
    not a table, a value out of range, a store that is a file, a Chroma URL with a bad port."""
    import tomllib
    from urllib.parse import urlparse

    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    env_config = os.environ.get("RAG_CONFIG")
    named = str(config) if config else env_config
    source = "--config" if config else "RAG_CONFIG"
    path = Path(named) if named else Path("rag.toml")
    file_values: dict[str, Any] = {}
    if path.is_file():
        try:
            file_values = tomllib.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(f"cannot read settings file {path}: it is not UTF-8 text ({exc.reason} at byte {exc.start})",
                              "Save the file as UTF-8 (TOML files must be UTF-8).") from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read settings file {path}: {exc}") from None
        if "rag" in file_values:
            if not isinstance(file_values["rag"], dict):
                raise ConfigError(
                    f"in settings file {path}: [rag] must be a table of settings, not {type(file_values['rag']).__name__} "
                    f"({file_values['rag']!r:.40})",
                    "Write the settings under a [rag] header (or at the top level), e.g.\n[rag]\nstore = \".rag\"")
            file_values = file_values["rag"]
    elif named:
        what = "is not a file" if path.exists() else "does not exist"
        raise ConfigError(f"settings file {path} (from {source}) {what}")
    env_keys = {name for name in Settings.model_fields if f"RAG_{name.upper()}" in os.environ}
    init = {k: v for k, v in file_values.items() if k not in env_keys}
    init.update({k: v for k, v in overrides.items() if v is not None})
    try:
        settings = Settings(**init)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid settings: {problems}") from None
    except SettingsError as exc:  # e.g. a RAG_* variable that should hold JSON and does not
        raise ConfigError(f"invalid settings in the environment: {exc}") from None
    if settings.chroma_url:
        try:
            urlparse(settings.chroma_url).port
        except ValueError:
            raise ConfigError(f"invalid Chroma URL {settings.chroma_url}: the port must be a number from 0 to 65535",
                              "Give --chroma-url / RAG_CHROMA_URL as http://host:port, e.g. http://127.0.0.1:8000.") from None
    elif settings.store.exists() and not settings.store.is_dir():
        raise ConfigError(f"the store {settings.store} is not a folder",
                          "Point --store / RAG_STORE at a folder (`rag ingest` creates it if it is missing).")
    return settings
