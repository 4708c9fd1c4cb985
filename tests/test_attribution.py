"""True attribution: a citation names the person whose words it quotes (the asker for words of a
question, the answerer for the answer), in the prose, the JSON, the CLI and the app's cards; and
code refuses a citation whose quote lies outside its speaker's words."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from rag import Engine, ingest, load_settings
from rag._answer import Sentence, check_attribution, compose, manifest_speakers, named
from rag._llm import check_citations
from rag._records import Answer, Citation, Passage, Retrieved, Segment, Speaker

SOURCE = (
    "JN: Our town spent four years rebuilding the harbour wall. What will you do for the fishers?\n\n"
    "NB: We will fund a loan programme for boat owners. The first payments arrive in the spring.\n"
)
QUESTION = "Our town spent four years rebuilding the harbour wall. What will you do for the fishers?"
ANSWER = "We will fund a loan programme for boat owners. The first payments arrive in the spring."
SPEAKERS = {
    ("harbour.md", "John Nater"): Speaker("JN", "John Nater", "interviewer"),
    ("harbour.md", "Navdeep Bains"): Speaker("NB", "Navdeep Bains", "interviewee"),
}


def _passage() -> Passage:
    q_start, a_start = SOURCE.index(QUESTION), SOURCE.index(ANSWER)
    return Passage(
        chunk_id="harbour.md#t0-1", transcript="harbour.md", title="Harbour", date="", kind="answer",
        speaker="Navdeep Bains", role="interviewee", text=ANSWER, segments=[Segment(ANSWER, a_start)],
        turns=(0, 1), start_char=0, end_char=a_start + len(ANSWER), question=QUESTION,
        question_speaker="John Nater", question_segments=[Segment(QUESTION, q_start)],
    )


def _sentence(p: Passage, field: str, words: str) -> Sentence:
    text = getattr(p, field)
    start = text.index(words)
    return Sentence(0, start, start + len(words), words, 1.0, field=field)


def _lookup(transcript: str, name: str):
    return SPEAKERS.get((transcript, name))


# ------------------------------------------------------------------ the check


def test_check_refuses_a_question_quote_attributed_to_the_answerer():
    p = _passage()
    words = "Our town spent four years rebuilding the harbour wall."
    a = QUESTION.index(words)
    spans = p.question_spans(a, a + len(words))
    assert SOURCE[spans[0][0] : spans[0][1]] == words
    # the interviewer's words, cited to the minister who answered: refused, whichever field it claims
    assert not check_attribution(Citation(1, p, words, spans, speaker="Navdeep Bains", role="interviewee", field="text"))
    assert not check_attribution(Citation(1, p, words, spans, speaker="Navdeep Bains", role="interviewee", field="question"))
    # the same quote cited to the one who said it passes
    assert check_attribution(Citation(1, p, words, spans, speaker="John Nater", role="interviewer", field="question"))
    # the answer's words pass for the answerer, and not for the asker
    b = ANSWER.index("We will")
    mine = ANSWER[b : ANSWER.index(".") + 1]
    a_spans = p.source_spans(b, b + len(mine))
    assert check_attribution(Citation(1, p, mine, a_spans, speaker="Navdeep Bains", field="text"))
    assert not check_attribution(Citation(1, p, mine, a_spans, speaker="John Nater", field="text"))
    # a quote that is not the field's text, or highlights outside it, fail too
    assert not check_attribution(Citation(1, p, "We will build a new harbour.", a_spans, speaker="Navdeep Bains"))
    assert not check_attribution(Citation(1, p, mine, spans, speaker="Navdeep Bains"))
    assert not check_attribution(Citation(1, p, mine, [], speaker="Navdeep Bains"))


def test_compose_never_emits_a_misattributed_citation():
    p = _passage()
    good = _sentence(p, "text", "The first payments arrive in the spring.")
    # a question sentence passed off as the answer's words (offsets into the question)
    words = "Our town spent four years rebuilding the harbour wall."
    bad = Sentence(0, QUESTION.index(words), QUESTION.index(words) + len(words), words, 1.0, field="text")
    text, cits = compose([Retrieved(p, 1.0)], [good, bad], speakers=_lookup)
    assert [(c.speaker, c.field) for c in cits] == [("Navdeep Bains", "text")]
    assert "harbour wall" not in text and "harbour wall" not in cits[0].quote
    # nothing left to quote with its true speaker: no citation, no answer text pretending otherwise
    text, cits = compose([Retrieved(p, 1.0)], [bad], speakers=_lookup)
    assert cits == [] and "harbour wall" not in text


# ------------------------------------------------------------------ compose


def test_question_and_answer_words_of_one_passage_are_two_citations_of_two_people():
    p = _passage()
    chosen = [
        _sentence(p, "question", "Our town spent four years rebuilding the harbour wall."),
        _sentence(p, "text", "We will fund a loan programme for boat owners."),
    ]
    text, cits = compose([Retrieved(p, 1.0)], chosen, speakers=_lookup)
    assert [(c.n, c.speaker, c.role, c.field) for c in cits] == [
        (1, "Navdeep Bains", "interviewee", "text"),
        (2, "John Nater", "interviewer", "question"),
    ]
    assert "loan programme" in cits[0].quote and "harbour" not in cits[0].quote
    assert "harbour wall" in cits[1].quote and "loan" not in cits[1].quote
    assert all(check_attribution(c) for c in cits)
    # the prose names each quoted person, by name and with the transcript's tag, next to their [n]
    assert "Navdeep Bains (NB) says: “We will fund a loan programme for boat owners.” [1]" in text
    assert "John Nater (JN), who said in the question: “Our town spent four years rebuilding the harbour wall.” [2]" in text
    # the highlights of each citation lie in that person's turn
    q_turn = (SOURCE.index("JN:"), SOURCE.index("\n\nNB:"))
    for a, b in cits[1].highlights:
        assert q_turn[0] <= a < b <= q_turn[1]
    assert all(a >= q_turn[1] for a, _ in cits[0].highlights)


def test_question_words_alone_are_attributed_to_the_asker():
    p = _passage()
    text, cits = compose([Retrieved(p, 1.0)], [_sentence(p, "question", "Our town spent four years rebuilding the harbour wall.")],
                         speakers=_lookup)
    assert text == "John Nater (JN) said in a question: “Our town spent four years rebuilding the harbour wall.” [1]"
    assert (cits[0].speaker, cits[0].role, cits[0].field) == ("John Nater", "interviewer", "question")
    data = Answer("q", text, cits, [], False).to_json()["citations"][0]
    assert (data["speaker"], data["role"], data["field"]) == ("John Nater", "interviewer", "question")
    # without a speaker lookup: no tag, and the asker's role is not guessed
    text, cits = compose([Retrieved(p, 1.0)], [_sentence(p, "question", "Our town spent four years rebuilding the harbour wall.")])
    assert text.startswith("John Nater said in a question:") and cits[0].role == "other"


def test_names_carry_the_tag_only_where_it_differs_from_the_name():
    assert named("Amar Shah", Speaker("AS", "Amar Shah", "interviewee")) == "Amar Shah (AS)"
    assert named("PP", Speaker("PP", "PP", "interviewer")) == "PP"
    assert named("Hon. Andrew Scheer", Speaker("Hon. Andrew Scheer", "Hon. Andrew Scheer")) == "Hon. Andrew Scheer"
    assert named("Amar Shah", None) == "Amar Shah"
    manifest = {"t": SimpleNamespace(speakers=[Speaker("AS", "Amar Shah", "interviewee")])}
    lookup = manifest_speakers(manifest)
    assert lookup("t", "Amar Shah").tag == "AS" and lookup("t", "AS").name == "Amar Shah" and lookup("t", "Nobody") is None


def test_llm_citations_name_the_answerer():
    p = _passage()
    _, cits = check_citations("The minister will fund loans for boat owners [1].", [Retrieved(p, 1.0)])
    assert [(c.speaker, c.role, c.field) for c in cits] == [("Navdeep Bains", "interviewee", "text")]
    assert check_attribution(cits[0])


# ------------------------------------------------------------------ end to end: engine, JSON, CLI, app

HARBOUR = """---
title: "Harbour recovery: an interview with the minister"
speakers:
  JN:
    name: John Nater
    role: interviewer
    description: Member for Perth-Wellington
  NB:
    name: Navdeep Bains
    role: interviewee
    description: Minister of Industry
---
JN: Our town spent four years rebuilding the harbour wall after the storm of 2019. The fishing fleet moved to Port Elgin in the meantime and many boats never came back. What will the ministry do for the fishers who stayed?

NB: We will fund a new loan programme for small boat owners. The first payments arrive in the spring, and the programme runs for three years.

JN: How will you decide who qualifies for the loans?

NB: Any owner of a registered vessel under twelve metres can apply. The regional office checks the registration and pays within six weeks.
"""

ASKED = "What did John Nater say about the harbour wall?"


@pytest.fixture(scope="module")
def harbour(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("harbour")
    (root / "in").mkdir()
    (root / "in" / "harbour.md").write_text(HARBOUR, encoding="utf-8")
    s = load_settings(store=root / "store")
    assert not ingest([root / "in"], s, embedder=embedder).failed
    return s


def test_engine_cites_the_interviewer_for_the_interviewers_words(harbour, embedder):
    e = Engine(harbour, embedder=embedder)
    a = e.ask(ASKED)
    assert not a.abstained and a.citations, a.text
    c = a.citations[0]
    assert "harbour wall" in c.quote
    assert (c.speaker, c.role, c.field) == ("John Nater", "interviewer", "question")
    assert c.passage.speaker == "Navdeep Bains"  # the passage is the minister's answer; the words are not his
    assert "John Nater (JN) said in a question" in a.text
    src = e.source_text(c.passage.transcript)
    assert all(src[x:y] in c.quote for x, y in c.highlights)
    assert all(check_attribution(x) for x in a.citations)
    data = json.loads(json.dumps(a.to_json()))["citations"][0]
    assert (data["speaker"], data["role"], data["field"]) == ("John Nater", "interviewer", "question")


def test_cli_sources_name_the_quoted_speaker(harbour, capsys):
    from rag.cli import main

    assert main(["ask", ASKED, "--store", str(harbour.store)]) == 0
    out = capsys.readouterr().out
    sources = out.split("Sources:", 1)[1]
    assert "[1] John Nater (interviewer), harbour.md" in sources
    assert "in a question to Navdeep Bains" in sources
    assert "[1] Navdeep Bains" not in sources
    assert main(["ask", ASKED, "--store", str(harbour.store), "--json"]) == 0
    c = json.loads(capsys.readouterr().out)["citations"][0]
    assert (c["speaker"], c["role"], c["field"]) == ("John Nater", "interviewer", "question")


def test_app_cards_and_export_name_the_quoted_speaker(harbour, embedder):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from ui import _shared as ui

    e = Engine(harbour, embedder=embedder)
    a = e.ask(ASKED)
    c = a.citations[0]
    transcripts = e.transcripts()
    label = ui.passage_label(c.passage, transcripts, c)
    assert label.startswith("John Nater (interviewer), in a question to Navdeep Bains — Harbour recovery")
    card = ui.passage_card_html(c.passage, transcripts, c.highlights, c)
    assert card.index("<b>John Nater</b>") < card.index("Answer (Navdeep Bains):")
    assert "Member for Perth-Wellington" in card and "<mark" in card.split("Answer (Navdeep Bains):")[0]
    md = ui.conversation_markdown([{"question": ASKED, "answer": a}], transcripts)
    assert "[1] John Nater (interviewer), in a question to Navdeep Bains — Harbour recovery" in md
    assert "  - Answer (Navdeep Bains): We will fund" in md  # the answer is context for the asker's words
    # a citation of the answer's words is headed by the answerer, with the question as context
    p = c.passage
    reply = Citation(2, p, p.text, p.source_spans(0, len(p.text)))
    assert (reply.speaker, reply.role, reply.field) == ("Navdeep Bains", "interviewee", "text")
    assert ui.passage_label(p, transcripts, reply).startswith("Navdeep Bains (interviewee) — Harbour recovery")
    card = ui.passage_card_html(p, transcripts, reply.highlights, reply)
    assert card.index("<b>Navdeep Bains</b>") < card.index("Question (John Nater, interviewer):")
