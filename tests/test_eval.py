"""Evaluation: question sets, quote location, metrics, `rag eval` and the quality gate.

Real store and model throughout (the session fixtures of conftest.py); the CLI runs in-process.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from pathlib import Path

import pytest

from rag import QuestionSetError
from rag import _evaluate as ev

ROOT = Path(__file__).resolve().parent.parent
SEED_SET = ROOT / "eval" / "seed.jsonl"
DEV_SET = ROOT / "eval" / "qmsum-committee-val" / "questions.jsonl"
SEED_ID = "nhs-impact-amar-shah-interview.txt"

# Quality floors, set from measured values (docs/EVALUATION.md has the table and the commands).
# Raising a floor is fine; lowering one needs a note here saying why.
# Measured on eval/seed.jsonl (41 questions, k = 5) with the ranking fitted on the training split:
# hit@1 0.647 (0.588 with the hand-set weights), hit@5 0.912 (31 of 34 with gold; was 0.941),
# abstention accuracy 0.951 (39 of 41: the fitted refusal model refuses "What is this interview
# about?", and "How much money has NHS IMPACT been given?" is still answered; 0.976 before it).
# Lowered from 0.91 / 0.95 with the fitted ranking and refusal. Raised back on 2026-12-07: "What is
# this interview about?" is answered from the interview's own parts (its introduction cited first),
# so hit@5 0.941 (32 of 34) and abstention 0.976 (40 of 41). The refusal model refitted on 2026-12-07
# with made-up questions of another subject as well refuses "Does he still see patients?" (a paraphrase:
# "patients" is not in the interview): abstention 0.951 (39 of 41), so its floor is 0.92 again; the
# floors allow one more to slip.
SEED_HIT5_FLOOR = 0.91
SEED_ABSTAIN_FLOOR = 0.92
# Measured on the development set (67 questions, k = 5, all six hearings in one store) with the
# weights `rag fit` learns on the training split: hit@1 0.702 (47 of 67), hit@5 0.895 (60 of 67).
# (The hand-set weights before: 0.701 and 0.910 here, chosen on this very set, and 0.616 / 0.845 on
# the training split, where the fitted ones reach 0.697 / 0.849 cross-validated.) The floors allow
# two or three questions to slip.
DEV_HIT5_FLOOR = 0.86
DEV_HIT1_FLOOR = 0.66


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """`rag ...` in this process; (exit status, stdout, stderr)."""
    from rag.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def seed_records(*ids: str) -> list[dict]:
    records = [json.loads(line) for line in SEED_SET.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in records if r["id"] in ids] if ids else records


@pytest.fixture(scope="module")
def seed_cli_report(seed_store, tmp_path_factory):
    """`rag eval eval/seed.jsonl --json` once for the module (RAG_* variables and rag.toml kept out)."""
    with pytest.MonkeyPatch.context() as mp:
        for key in list(os.environ):
            if key.startswith("RAG_"):
                mp.delenv(key)
        mp.chdir(tmp_path_factory.mktemp("eval-cwd"))
        code, out, err = run_cli(["eval", str(SEED_SET), "--store", str(seed_store.store), "--json"])
    assert code == 0, err
    return json.loads(out)


# ---------------------------------------------------------------------------- question sets


def test_locate_quote_exact():
    text = "PP: Why?\nAS: Because it works. It really works.\n"
    spans = ev.locate_quote(text, "Because it works.")
    assert spans == [(13, 30)]
    assert text[13:30] == "Because it works."
    assert ev.locate_quote(text, "works") == [(24, 29), (41, 46)]  # every occurrence is gold


def test_locate_quote_normalises_quote_marks_and_whitespace():
    text = "AS: It’s definitely harder\n  applying “improvement” across   boundaries — really."
    quote = 'It\'s definitely harder applying "improvement" across boundaries - really.'
    [(a, b)] = ev.locate_quote(text, quote)
    assert text[a:b] == "It’s definitely harder\n  applying “improvement” across   boundaries — really."
    # and the other way round: curly quote in the question set, straight in the text
    [(a, b)] = ev.locate_quote("I don't think so.", "don’t think")
    assert (a, b) == (2, 13)


def test_missing_quote_names_the_question():
    questions = ev.validate_questions([
        {"id": "ok", "question": "Fine?", "sources": [{"transcript": "t.txt", "quote": "is here"}]},
        {"id": "broken-42", "question": "Where?", "sources": [{"transcript": "t.txt", "quote": "is not here at all"}]},
    ])
    with pytest.raises(QuestionSetError, match="broken-42") as info:
        ev.locate_sources(questions, {"t.txt": "the text is here."}.__getitem__)
    assert "is not here" in str(info.value)
    unknown = ev.validate_questions([{"id": "q-unknown", "question": "x?", "sources": [{"transcript": "nope.txt", "quote": "x"}]}])
    with pytest.raises(QuestionSetError, match="q-unknown.*nope.txt"):
        ev.locate_sources(unknown, {"t.txt": "x"}.__getitem__)


def test_load_questions_jsonl_yaml_and_errors(tmp_path):
    recs = [
        {"id": "a", "question": "First?", "sources": [{"transcript": "t.txt", "quote": "q"}], "style": "specific"},
        {"id": "b", "question": "And then?", "follow_up_of": "a", "expect_no_answer": True, "must_mention": "x"},
    ]
    loaded = ev.load_questions(write_jsonl(tmp_path / "set.jsonl", recs))
    assert [q["id"] for q in loaded] == ["a", "b"]
    assert loaded[1]["follow_up_of"] == "a" and loaded[1]["must_mention"] == ["x"] and loaded[1]["style"] == "unspecified"
    assert loaded[0]["expect_no_answer"] is False and loaded[0]["filters"] == {}

    import yaml

    (tmp_path / "set.yaml").write_text(yaml.safe_dump({"questions": recs}), encoding="utf-8")
    assert [q["id"] for q in ev.load_questions(tmp_path / "set.yaml")] == ["a", "b"]

    (tmp_path / "bad.jsonl").write_text('{"id": "a", "question": "x"}\n{not json\n', encoding="utf-8")
    with pytest.raises(QuestionSetError, match=r"bad.jsonl:2"):
        ev.load_questions(tmp_path / "bad.jsonl")
    with pytest.raises(QuestionSetError, match="duplicate"):
        ev.load_questions(write_jsonl(tmp_path / "dup.jsonl", [recs[0], recs[0]]))
    with pytest.raises(QuestionSetError, match="'c'.*not in the set"):
        ev.load_questions(write_jsonl(tmp_path / "orphan.jsonl", [{"id": "d", "question": "x?", "follow_up_of": "c"}]))
    with pytest.raises(QuestionSetError, match="'e'.*question"):
        ev.load_questions(write_jsonl(tmp_path / "empty.jsonl", [{"id": "e", "question": "  "}]))
    with pytest.raises(QuestionSetError, match="does not exist"):
        ev.load_questions(tmp_path / "missing.jsonl")


def test_shipped_question_sets_are_well_formed():
    seed = ev.load_questions(SEED_SET)
    assert len(seed) >= 25
    styles = {q["style"] for q in seed}
    assert {"specific", "speaker", "followup", "unanswerable", "summarize"} <= styles
    assert sum(q["expect_no_answer"] for q in seed) >= 5
    assert sum(1 for q in seed if q["follow_up_of"]) >= 2
    by_question = {q["question"]: q for q in seed}
    assert "Bangladesh" in by_question["What can we learn from Bangladesh?"]["sources"][0]["quote"]
    assert by_question["What is the capital of France?"]["expect_no_answer"] is True
    # quotes spread over the introduction, all six answers and the reader's comment
    text = (ROOT / "corpus" / SEED_ID).read_text(encoding="utf-8")
    gold = ev.locate_sources(seed, lambda tid: text)
    marks = [text.index("In my conversation")] + [m for m in _starts(text, "\nAS: ")] + [text.index("\nComments\n")]
    sections = set()
    for spans in gold.values():
        for src in spans:
            for _, a, _ in src:
                sections.add(max(i for i, m in enumerate(marks) if m <= a))
    assert sections == set(range(8)), sections  # intro, six answers, comment
    dev = ev.load_questions(DEV_SET)
    assert len(dev) == 67 and all(q["sources"] for q in dev)
    assert (DEV_SET.parent / "README.md").read_text(encoding="utf-8").count("MIT") >= 1


def _starts(text: str, needle: str) -> list[int]:
    out, at = [], text.find(needle)
    while at >= 0:
        out.append(at)
        at = text.find(needle, at + 1)
    return out


# ---------------------------------------------------------------------------- metrics


def test_retrieval_metrics_on_hand_made_rankings():
    gold = [[("t", 100, 200)], [("t", 500, 600), ("t", 900, 950)]]  # two sources, the second quoted twice
    ranked = [("t", 0, 99), ("u", 100, 200), ("t", 150, 160), ("t", 940, 1000), ("t", 120, 130)]
    s = ev.retrieval_scores(ranked, gold, k=5)
    assert s["hit@1"] == 0.0 and s["hit@5"] == 1.0
    assert s["first_relevant_rank"] == 3  # ("t", 0, 99) ends before the gold; ("u", ...) is another transcript
    assert s["recall@5"] == 1.0
    assert s["mrr@10"] == pytest.approx(1 / 3)
    # first source found at rank 3, second at rank 4; rank 5 repeats the first and adds nothing
    ideal = 1 + 1 / math.log2(3)
    assert s["ndcg@10"] == pytest.approx((1 / math.log2(4) + 1 / math.log2(5)) / ideal)
    s2 = ev.retrieval_scores(ranked, gold, k=2)
    assert s2["hit@2"] == 0.0 and s2["recall@2"] == 0.0 and "hit@5" not in s2
    perfect = ev.retrieval_scores([("t", 150, 250), ("t", 590, 700)], gold, k=5)
    assert perfect["hit@1"] == 1.0 and perfect["mrr@10"] == 1.0 and perfect["ndcg@10"] == pytest.approx(1.0)
    half = ev.retrieval_scores([("t", 0, 10), ("t", 199, 300)], gold, k=5)
    assert half["recall@5"] == 0.5 and half["mrr@10"] == 0.5
    # ranges that only touch do not overlap
    assert ev.overlaps(("t", 0, 100), ("t", 100, 200)) is False
    assert ev.overlaps(("t", 0, 101), ("t", 100, 200)) is True


def test_answer_metrics_on_hand_made_answers():
    assert ev.token_f1("The cat sat on the mat.", "a cat sat on a mat") == pytest.approx(1.0)
    # prediction: cat sat (2 tokens); reference: cat sat down quickly (4): P = 1, R = 0.5
    assert ev.token_f1("cat sat", "cat sat down quickly") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert ev.token_f1("Amar Shah says: “dogs bark” [1]", "cats meow") == 0.0
    assert ev.token_f1("said [1] [2]", "said") == pytest.approx(1.0)  # citation markers are not words
    # LCS of "a b c d e" and "a c e f" is "a c e": P = 3/5, R = 3/4
    assert ev.rouge_l("a b c d e", "a c e f") == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert ev.rouge_l("x y", "y x") == pytest.approx(0.5)
    assert ev.must_mention_coverage("Work in Bangladesh and Uganda [1]", ["bangladesh", "Uganda", "Scotland"]) == pytest.approx(2 / 3)
    assert ev.must_mention_coverage("anything", []) is None
    assert ev.must_mention_coverage("eighty countries", ["80"]) == 0.0


def test_content_word_f1_key_fact_and_length_budget():
    # stopwords ("the", "said", "that", "were", "by") and citation markers carry nothing
    assert ev.answer_words("The minister said that the loans were cut [1].") == ["minister", "loans", "cut"]
    assert ev.answer_f1("The minister said that the loans were cut [1].", "Loans cut by the minister") == pytest.approx(1.0)
    assert ev.token_f1("The minister said that the loans were cut [1].", "Loans cut by the minister") < 0.8
    # prediction: loans cut; reference: loans rose sharply: P = 1/2, R = 1/3
    assert ev.answer_f1("Loans were cut", "Loans rose sharply") == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    assert ev.answer_f1("Café closures", "cafe CLOSURES") == pytest.approx(1.0)  # case and accents folded
    assert ev.answer_f1("the of and", "Loans") == 0.0
    # key_fact: all the terms or nothing; must_mention keeps the share
    answer = "Work in Bangladesh and Uganda [1]"
    assert ev.key_fact(answer, ["bangladesh", "Uganda", "Scotland"]) == 0.0
    assert ev.must_mention_coverage(answer, ["bangladesh", "Uganda", "Scotland"]) == pytest.approx(2 / 3)
    assert ev.key_fact(answer, ["BANGLADESH", "uganda"]) == 1.0
    assert ev.key_fact("Québec’s plan is U.K.-wide.", ["quebec's", "U.K.", "plan"]) == 1.0  # accents, quote marks, punctuation
    assert ev.key_fact("Bangladeshi work", ["Bangladesh"]) == 0.0  # whole words only
    assert ev.key_fact("anything", []) is None
    assert ev.TOP_PASSAGE_WORDS == 120
    assert ev.cut_words("one  two\nthree four", 3) == "one two three"


def _qa_passage(source: str, question: str, answer: str, *, asker: str = "Pat", speaker: str = "Amar Shah"):
    """A passage over ``source``: ``asker`` asks ``question``, ``speaker`` answers ``answer``."""
    from rag._records import Passage, Segment

    q0, a0 = source.index(question), source.index(answer)
    return Passage(
        chunk_id="t.txt#0-1", transcript="t.txt", title="t", date="", kind="answer", speaker=speaker,
        role="interviewee", text=answer, segments=[Segment(answer, a0)], turns=(0, 1), start_char=q0,
        end_char=a0 + len(answer), question=question, question_speaker=asker, question_segments=[Segment(question, q0)],
    )


SOURCE = "Pat: Is it true that Bangladesh inspired you?\nAmar Shah: Yes. Bangladesh inspired me. It was great.\n"


def test_citation_speaker_accuracy_on_hand_made_citations():
    from types import SimpleNamespace

    from rag._records import Citation

    p = _qa_passage(SOURCE, "Is it true that Bangladesh inspired you?", "Yes. Bangladesh inspired me. It was great.")
    said = SOURCE.index("Bangladesh inspired me.")
    asked = SOURCE.index("Is it true")
    answer_words = Citation(1, p, "Bangladesh inspired me.", [(said, said + 23)])
    assert ev.citation_speaker_ok(answer_words) is True
    # the asker's words, attributed to the answerer (no speaker on the citation: the passage's)
    question_words = Citation(2, p, "Is it true that Bangladesh inspired you?", [(asked, asked + 40)])
    assert ev.citation_speaker_ok(question_words) is False
    # the same words attributed to the asker are right; the answer's words attributed to the asker are not
    assert ev.citation_speaker_ok(SimpleNamespace(n=2, passage=p, quote="", highlights=[(asked, asked + 40)], speaker="Pat")) is True
    assert ev.citation_speaker_ok(SimpleNamespace(n=1, passage=p, quote="", highlights=[(said, said + 23)], speaker="Pat")) is False
    assert ev.citation_speaker_ok(SimpleNamespace(n=1, passage=p, quote="", highlights=[(said, said + 23)], speaker="Someone")) is False
    # a highlight running from the question over "Amar Shah: " into the answer belongs to nobody
    across = Citation(3, p, "", [(SOURCE.index("inspired you?"), said + 10)])
    assert ev.citation_speaker_ok(across) is False
    # every highlight must be inside: one good and one outside is wrong
    assert ev.citation_speaker_ok(Citation(4, p, "", [(said, said + 23), (asked, asked + 5)])) is False
    # no highlights: the quote is looked up in the answer text, then in the question
    assert ev.citation_speaker_ok(Citation(5, p, "It was great.", [])) is True
    assert ev.citation_speaker_ok(Citation(6, p, "Is it true", [])) is False
    assert ev.citation_speaker_ok(Citation(7, p, "not in the passage", [])) is False
    # an introduction: nobody's words, cited as nobody's
    intro = _qa_passage(SOURCE, "Is it true", "Yes. Bangladesh inspired me.", asker="", speaker="")
    intro.question_segments = []
    assert ev.citation_speaker_ok(Citation(8, intro, "", [(said, said + 23)])) is True
    assert ev.citation_speaker_ok(Citation(9, intro, "", [(asked, asked + 5)])) is False
    # an unnamed asker's words, cited as said by nobody, are right; the answerer's words are not
    unnamed = _qa_passage(SOURCE, "Is it true that Bangladesh inspired you?", "Yes. Bangladesh inspired me.", asker="")
    assert ev.citation_speaker_ok(SimpleNamespace(n=1, passage=unnamed, quote="", highlights=[(asked, asked + 40)], speaker="")) is True
    assert ev.citation_speaker_ok(SimpleNamespace(n=1, passage=unnamed, quote="", highlights=[(said, said + 23)], speaker="")) is False
    yes = SOURCE.index("Yes.")
    assert ev.spoken_ranges(p, "amar shah") == [(yes, yes + len("Yes. Bangladesh inspired me. It was great."))]


def test_engine_row_answer_metrics_and_top_passage_baseline():
    from types import SimpleNamespace

    from rag._records import Citation, Retrieved

    p = _qa_passage(SOURCE, "Is it true that Bangladesh inspired you?", "Yes. Bangladesh inspired me. It was great.")
    said, asked = SOURCE.index("Bangladesh inspired me."), SOURCE.index("Is it true")
    long_text = "word " * 119 + "Bangladesh inspired"  # the budget keeps "Bangladesh", cuts "inspired"
    long_source = "Pat: Well?\nAmar Shah: " + long_text + "\n"
    top = _qa_passage(long_source, "Well?", long_text)
    answer = SimpleNamespace(
        text="Amar Shah: “Bangladesh inspired me.” [1] “Is it true that Bangladesh inspired you?” [2]",
        citations=[Citation(1, p, "Bangladesh inspired me.", [(said, said + 23)]),
                   Citation(2, p, "Is it true that Bangladesh inspired you?", [(asked, asked + 40)])],
        retrieved=[Retrieved(top, 0.9, 1), Retrieved(p, 0.8, 2)], abstained=False, evidence=0.7,
    )
    q = ev.validate_questions([{"id": "bd", "question": "What inspired him?", "answer": "Bangladesh inspired him.",
                                "must_mention": ["Bangladesh", "Uganda"]}])[0]
    row = ev._engine_row(q, [], answer, list(answer.retrieved), 5, 12.0)
    assert row["citation_speaker_accuracy"] == 0.5
    assert [c["speaker_correct"] for c in row["citations"]] == [True, False]
    assert row["must_mention"] == 0.5 and row["key_fact"] == 0.0
    # answer: amar shah bangladesh inspired true bangladesh inspired (7); reference: bangladesh inspired
    # (him is a stopword): 2 in common, P = 2/7, R = 1
    assert ev.answer_words(answer.text) == ["amar", "shah", "bangladesh", "inspired", "true", "bangladesh", "inspired"]
    assert row["answer_f1"] == pytest.approx(4 / 9)
    # top passage: 119 x "word" + "Bangladesh" (120 words): P = 1/120, R = 1/2
    assert len(row["top_passage"].split()) == 120 and row["top_passage"].endswith("Bangladesh")
    assert row["top_passage_f1"] == pytest.approx(2 * (1 / 120) * (1 / 2) / (1 / 120 + 1 / 2))
    m = ev.aggregate([row], k=5)
    assert m["citation_speaker_accuracy"] == 0.5 and m["key_fact"] == 0.0 and m["top_passage_f1"] == pytest.approx(0.0164, abs=1e-4)
    report = {"k": 5, "metrics": m, "questions": [row]}
    table = ev.summary_table(report)
    for key in ("citation_speaker_accuracy", "key_fact", "answer_f1", "top_passage_f1"):
        assert key in table, key
    lines = table.splitlines()
    assert lines.index(next(l for l in lines if l.startswith("top_passage_f1"))) == \
        lines.index(next(l for l in lines if l.startswith("answer_f1"))) + 1  # side by side
    [problem] = ev.misses(report)
    assert "quote not spoken by the cited speaker in [2]" in problem and "must_mention" in problem
    # unanswerable questions have no answer metrics
    q_no = ev.validate_questions([{"id": "no", "question": "x?", "expect_no_answer": True, "answer": "y", "must_mention": ["z"]}])[0]
    row_no = ev._engine_row(q_no, [], answer, list(answer.retrieved), 5, 1.0)
    assert row_no["key_fact"] is None and row_no["answer_f1"] is None and row_no["top_passage_f1"] is None


def test_abstention_accuracy_and_latency_percentiles():
    assert ev.abstention_accuracy([(True, True), (False, False), (True, False), (False, True)]) == 0.5
    assert ev.abstention_accuracy([(False, False)] * 3) == 1.0
    assert ev.abstention_accuracy([]) is None
    assert ev.percentile([10, 20, 30, 40], 50) == 25
    assert ev.percentile([5.0], 95) == 5.0
    assert ev.percentile(list(range(1, 101)), 95) == pytest.approx(95.05)


def test_aggregate_averages_only_where_defined():
    rows = [
        {"style": "a", "expect_no_answer": False, "abstained": False, "hit@1": 1.0, "hit@5": 1.0, "recall@5": 1.0,
         "mrr@10": 1.0, "ndcg@10": 1.0, "citation_precision": 0.5, "latency_ms": 10.0},
        {"style": "a", "expect_no_answer": False, "abstained": True, "hit@1": 0.0, "hit@5": 1.0, "recall@5": 0.5,
         "mrr@10": 0.25, "ndcg@10": 0.4, "citation_precision": None, "latency_ms": 30.0},
        {"style": "b", "expect_no_answer": True, "abstained": False, "hit@1": None, "latency_ms": 20.0},
    ]
    m = ev.aggregate(rows, k=5)
    assert m["hit@1"] == 0.5 and m["hit@5"] == 1.0 and m["mrr@10"] == 0.625
    assert m["citation_precision"] == 0.5  # the abstained answer has no citations to judge
    assert m["abstain_accuracy"] == pytest.approx(1 / 3, abs=1e-4)  # totals are rounded to 4 places
    assert m["false_abstain_rate"] == 0.5 and m["false_answer_rate"] == 1.0
    assert m["latency_p50_ms"] == 20.0
    styles = ev.by_style(rows, k=5)
    assert styles["a"]["n"] == 2 and styles["b"]["hit@1"] is None and styles["b"]["abstain_accuracy"] == 0.0
    t = ev.tradeoff([{"expect_no_answer": False, "evidence": 0.5}, {"expect_no_answer": True, "evidence": 0.3}], [0.2, 0.4, 0.6])
    assert [(r["answerable_abstained"], r["unanswerable_answered"]) for r in t["rows"]] == [(0.0, 1.0), (0.0, 0.0), (1.0, 0.0)]


def test_baseline_chunks_point_into_the_text():
    from rag._baselines import split_chunks

    text = (ROOT / "corpus" / SEED_ID).read_text(encoding="utf-8")
    chunks = split_chunks({SEED_ID: text})
    assert len(chunks) > 5
    for c in chunks:
        assert text[c.start_char : c.end_char] == c.text
        assert len(c.text) <= 1000
    assert chunks[0].start_char <= 5 and chunks[-1].end_char >= len(text.rstrip()) - 1
    # 200 characters of overlap at most: consecutive chunks overlap or touch
    assert all(b.start_char <= a.end_char + 1 for a, b in zip(chunks, chunks[1:]))


# ---------------------------------------------------------------------------- running


def test_eval_json_on_the_seed_set(seed_cli_report):
    r = seed_cli_report
    assert r["n"] == len(seed_records()) and r["k"] == 5
    for key in ("hit@1", "hit@5", "recall@5", "mrr@10", "ndcg@10", "citation_precision", "citation_recall",
                "citation_speaker_accuracy", "must_mention", "key_fact", "answer_f1", "top_passage_f1",
                "token_f1", "rouge_l", "abstain_accuracy", "latency_p50_ms", "latency_p95_ms"):
        assert key in r["metrics"], key
        assert r["metrics"][key] is not None, key
    assert {"specific", "speaker", "followup", "unanswerable", "summarize"} <= set(r["by_style"])
    assert r["by_style"]["unanswerable"]["hit@1"] is None  # nothing to retrieve
    assert r["by_style"]["specific"]["n"] + r["by_style"]["speaker"]["n"] <= r["n"]
    qs = {q["id"]: q for q in r["questions"]}
    assert list(qs) == [rec["id"] for rec in seed_records()]
    for q in r["questions"]:
        assert {"id", "hit@1", "hit@5", "retrieved", "citations", "answer", "abstained"} <= set(q)
        for p in q["retrieved"]:
            assert {"chunk_id", "transcript", "start_char", "end_char"} <= set(p)
        assert len(q["retrieved"]) <= max(5, len(q["citations"]))  # the top 5, and what is cited beyond them
    # every citation points at a retrieved passage
    for q in r["questions"]:
        assert {c["chunk_id"] for c in q["citations"]} <= {p["chunk_id"] for p in q["retrieved"]}
    # the two seed cases
    bangladesh = qs["bangladesh"]
    assert bangladesh["hit@1"] == 1.0 and not bangladesh["abstained"] and "Bangladesh" in bangladesh["answer"]
    assert qs["france-capital"]["abstained"] and qs["france-capital"]["hit@1"] is None
    # follow-ups are asked with the earlier answer as history, so the engine resolves them
    uganda = qs["bangladesh-uganda"]
    assert uganda["follow_up_of"] == "bangladesh"
    assert uganda["resolved_question"] != "And Uganda?" and "Uganda" in uganda["resolved_question"]
    # trade-off table computed from the evidence
    rows = r["abstention_tradeoff"]["rows"]
    assert rows and all(0 <= x["answerable_abstained"] <= 1 for x in rows)
    assert r["abstention_tradeoff"]["evidence"]["unanswerable"]["n"] == r["metrics"]["n_unanswerable"]


def test_quality_gate_on_the_seed_set(seed_cli_report):
    m = seed_cli_report["metrics"]
    assert m["hit@5"] >= SEED_HIT5_FLOOR, f"hit@5 fell to {m['hit@5']} (floor {SEED_HIT5_FLOOR})"
    assert m["abstain_accuracy"] >= SEED_ABSTAIN_FLOOR, f"abstention accuracy fell to {m['abstain_accuracy']} (floor {SEED_ABSTAIN_FLOOR})"


def test_eval_out_and_compare(seed_store, tmp_path):
    subset = write_jsonl(tmp_path / "subset.jsonl", seed_records("bangladesh", "bangladesh-uganda", "france-capital", "scotland"))
    code, out, err = run_cli(["eval", str(subset), "--store", str(seed_store.store), "--k", "3", "--out", str(tmp_path / "run1")])
    assert code == 0, err
    assert "hit@3" in out and "hit@1" in out
    for name in ("report.md", "report.json", "chart.png"):
        assert (tmp_path / "run1" / name).is_file(), name
    assert (tmp_path / "run1" / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    first = json.loads((tmp_path / "run1" / "report.json").read_text(encoding="utf-8"))
    assert first["k"] == 3 and "hit@3" in first["metrics"] and "hit@3" in first["questions"][0]
    md = (tmp_path / "run1" / "report.md").read_text(encoding="utf-8")
    assert "| hit@3 |" in md and "bangladesh" in md
    for key in ("citation_speaker_accuracy", "answer_f1", "top_passage_f1"):
        assert f"| {key} |" in md and key in out, key

    # an "earlier" report that was worse on hit@1 and lost one question
    earlier = json.loads(json.dumps(first))
    earlier["metrics"]["hit@1"] = round(first["metrics"]["hit@1"] - 0.25, 4)
    earlier["metrics"]["latency_p50_ms"] = first["metrics"]["latency_p50_ms"] + 1000
    earlier["questions"][0]["hit@1"] = 0.0
    (tmp_path / "earlier.json").write_text(json.dumps(earlier), encoding="utf-8")
    code, out, err = run_cli(["eval", str(subset), "--store", str(seed_store.store), "--k", "3",
                              "--compare", str(tmp_path / "earlier.json")])
    assert code == 0, err
    assert "change against" in out
    changes = out.split("change against", 1)[1].splitlines()
    hit1 = next(line for line in changes if line.startswith("hit@1 "))
    assert "+0.250" in hit1 and "better" in hit1
    lat = next(line for line in changes if line.startswith("latency_p50_ms"))
    assert "better" in lat
    assert "bangladesh: hit@1 gained" in out
    ev_cmp = ev.compare_metrics(first, earlier)
    assert ev_cmp["hit@1"]["change"] == pytest.approx(0.25) and ev_cmp["hit@3"]["change"] == 0

    code, out, err = run_cli(["eval", str(subset), "--store", str(seed_store.store), "--compare", str(tmp_path / "nope.json")])
    assert code == 1 and "no earlier report" in err


def test_eval_baselines_side_by_side(seed_store, tmp_path):
    subset = write_jsonl(tmp_path / "subset.jsonl", seed_records("bangladesh", "elft-partners", "france-capital"))
    code, out, err = run_cli(["eval", str(subset), "--store", str(seed_store.store), "--json", "--baseline", "all"])
    assert code == 0, err
    r = json.loads(out)
    assert set(r["baselines"]) == {"naive", "bm25"}
    text = (ROOT / "corpus" / SEED_ID).read_text(encoding="utf-8")
    for name, b in r["baselines"].items():
        assert b["transcripts"] == [SEED_ID] and b["chunks"] > 5
        for key in ("hit@1", "hit@5", "mrr@10", "ndcg@10", "citation_precision", "abstain_accuracy"):
            assert key in b["metrics"], (name, key)
        rows = {q["id"]: q for q in b["questions"]}
        assert rows["bangladesh"]["hit@5"] == 1.0, name  # the sentence is in one of the chunks
        assert rows["france-capital"]["abstained"] is False  # baselines never abstain
        for q in b["questions"]:
            for c in q["retrieved"]:
                assert 0 <= c["start_char"] < c["end_char"] <= len(text)
    assert b["metrics"]["abstain_accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    # --transcripts: the same texts read from the folder give the same numbers
    code, out2, err = run_cli(["eval", str(subset), "--store", str(seed_store.store), "--json", "--baseline", "bm25",
                               "--transcripts", str(ROOT / "corpus")])
    assert code == 0, err
    strip = lambda m: {key: v for key, v in m.items() if not key.startswith("latency")}  # noqa: E731
    assert strip(json.loads(out2)["baselines"]["bm25"]["metrics"]) == strip(r["baselines"]["bm25"]["metrics"])


OTHER = (
    "Interviewer: Where do the zebras at the sanctuary sleep?\n\n"
    "Keeper Jo: The zebras sleep standing up in the eastern paddock, close to the waterhole, "
    "and the youngest foals lie down in the straw barn.\n"
)


@pytest.fixture(scope="module")
def two_transcript_store(tmp_path_factory, embedder):
    """A store holding the seed interview and a short second transcript no question names."""
    import shutil

    from rag import ingest, load_settings

    folder = tmp_path_factory.mktemp("two") / "in"
    folder.mkdir()
    shutil.copy(ROOT / "corpus" / SEED_ID, folder / SEED_ID)
    (folder / "zebras.txt").write_text(OTHER, encoding="utf-8")
    settings = load_settings(store=folder.parent / "store")
    assert not ingest([folder], settings, embedder=embedder).failed
    return settings, folder


def test_baselines_search_every_transcript_in_the_store(two_transcript_store, embedder, tmp_path):
    """The question set names only the seed interview; the baselines must still search both
    transcripts, as ours does, and find the second one's answer."""
    import shutil

    from rag import Engine
    from rag._baselines import split_chunks

    settings, folder = two_transcript_store
    engine = Engine(settings, embedder=embedder)
    assert sorted(engine.transcripts()) == [SEED_ID, "zebras.txt"]
    questions = seed_records("bangladesh") + [{"id": "zebras", "question": "Where do the zebras sleep?", "style": "specific"}]
    both = {SEED_ID: engine.source_text(SEED_ID), "zebras.txt": engine.source_text("zebras.txt")}
    n_chunks = len(split_chunks(both))
    assert n_chunks == len(split_chunks({SEED_ID: both[SEED_ID]})) + 1
    report = ev.evaluate(questions, settings, engine=engine, baselines=("naive", "bm25"))
    for name, b in report["baselines"].items():
        assert b["transcripts"] == [SEED_ID, "zebras.txt"], name
        assert b["chunks"] == n_chunks, name
        rows = {q["id"]: q for q in b["questions"]}
        assert rows["zebras"]["retrieved"][0]["transcript"] == "zebras.txt", name
        assert rows["bangladesh"]["hit@5"] == 1.0, name
    # --transcripts: the store's transcripts read from the folder they were ingested from, same corpus
    same = ev.evaluate(questions, settings, engine=engine, baselines=("bm25",), transcripts=folder)
    assert same["baselines"]["bm25"]["transcripts"] == [SEED_ID, "zebras.txt"]
    assert same["baselines"]["bm25"]["chunks"] == n_chunks
    # a folder lacking one of the store's transcripts, or holding another version of it, is refused
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(folder / SEED_ID, partial / SEED_ID)
    with pytest.raises(QuestionSetError, match="zebras.txt"):
        ev.evaluate(questions, settings, engine=engine, baselines=("bm25",), transcripts=partial)
    (partial / "zebras.txt").write_text(OTHER.replace("eastern", "western"), encoding="utf-8")
    with pytest.raises(QuestionSetError, match="not the version of zebras.txt"):
        ev.evaluate(questions, settings, engine=engine, baselines=("bm25",), transcripts=partial)


def test_evaluate_api_errors(seed_store, embedder):
    from rag import Engine

    engine = Engine(seed_store, embedder=embedder)
    bad = [{"id": "typo-quote", "question": "What can we learn from Bangladesh?",
            "sources": [{"transcript": SEED_ID, "quote": "Bangladesh is where it all began"}]}]
    with pytest.raises(QuestionSetError, match="typo-quote"):
        ev.evaluate(bad, seed_store, engine=engine)
    missing = [{"id": "other-file", "question": "x?", "sources": [{"transcript": "other.txt", "quote": "x"}]}]
    with pytest.raises(QuestionSetError, match="other-file.*not in the store"):
        ev.evaluate(missing, seed_store, engine=engine)
    seen = []
    report = ev.evaluate(seed_records("bangladesh", "bangladesh-uganda"), seed_store, engine=engine, k=2,
                         progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (2, 2) and report["k"] == 2 and "hit@2" in report["metrics"]


@pytest.mark.slow
def test_dev_set_hit_at_5(dev_store, embedder):
    from rag import Engine

    report = ev.evaluate(DEV_SET, dev_store, engine=Engine(dev_store, embedder=embedder), k=5)
    assert report["n"] == 67
    hit5 = report["metrics"]["hit@5"]
    assert hit5 >= DEV_HIT5_FLOOR, f"dev hit@5 fell to {hit5} (floor {DEV_HIT5_FLOOR})"
    hit1 = report["metrics"]["hit@1"]
    assert hit1 >= DEV_HIT1_FLOOR, f"dev hit@1 fell to {hit1} (floor {DEV_HIT1_FLOOR})"
