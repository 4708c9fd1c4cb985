"""A question whose premise names the wrong speaker ("What did the interviewer say about
Bangladesh?" when the guest said it) is answered with the words of whoever said it, saying they
are not the named person's, rather than with the named person's weaker words or a refusal
(Engine._said_by_others; the thresholds are fitted by scripts/fit_premise.py). A word that is
also a first name ("the Bill") does not name a speaker."""

from __future__ import annotations

import pytest

from rag import Engine, ingest, load_settings
from rag._query import Corpus
from rag._records import Speaker

from test_query import _passage


@pytest.fixture(scope="module")
def seed_engine(seed_store):
    return Engine(seed_store)


def test_the_interviewer_is_named_but_the_guest_said_it(seed_engine):
    a = seed_engine.ask("What did the interviewer say about Bangladesh?")
    assert not a.abstained
    assert a.premise == "speaker"
    assert a.text.startswith("I found this said by others, not by the interviewer")
    assert a.citations and all(c.speaker == "Amar Shah" and c.field == "text" for c in a.citations)
    assert any("Bangladesh" in c.quote for c in a.citations)
    assert a.to_json()["premise"] == "speaker"


def test_a_true_premise_is_answered_as_asked(seed_engine):
    a = seed_engine.ask("What did Amar Shah say about Bangladesh?")
    assert not a.abstained and a.premise == ""
    assert a.text.startswith("Amar Shah (AS) says")
    # and nothing said by anyone: still a refusal, not a correction
    b = seed_engine.ask("What did the interviewer say about GP waiting times?")
    assert b.abstained and b.premise == ""


PANEL = """---
title: Harbour panel
speakers:
  RT: {name: Rita Tamm, role: interviewer}
  OL: {name: Olav Lind, role: interviewee}
  EK: {name: Eva Kask, role: interviewee}
---

RT: Olav, what happened to the harbour wall during the storm?

OL: The storm in January broke the eastern harbour wall in two places, and the sea flooded the fish market for three days.

RT: Eva, how are the schools in the town doing?

EK: Our schools hired six new teachers this year, and the primary school finally has a library of its own.

RT: And the harbour budget?

OL: The council raised the harbour budget by 12% in 2021, to £4 million, after the storm damage was counted.
"""


@pytest.fixture(scope="module")
def panel(tmp_path_factory, embedder):
    """An engine over the panel transcript above."""
    folder = tmp_path_factory.mktemp("panel")
    (folder / "panel.md").write_text(PANEL, encoding="utf-8")
    s = load_settings(store=folder / "store")
    assert not ingest([folder / "panel.md"], s, embedder=embedder).failed
    return Engine(s)


def test_a_panel_question_naming_the_other_guest(panel):
    engine = panel
    wrong = engine.ask("What did Eva Kask say about the storm and the harbour wall?")
    assert wrong.premise == "speaker" and not wrong.abstained
    assert "not by Eva Kask" in wrong.text
    assert wrong.citations[0].speaker == "Olav Lind" and "harbour wall" in wrong.citations[0].quote
    right = engine.ask("What did Eva Kask say about the schools?")
    assert right.premise == "" and right.citations[0].speaker == "Eva Kask"


def test_a_word_that_is_also_a_first_name_is_not_a_speaker():
    bill = Speaker("BB", "Bill Blair", "interviewee")
    corpus = Corpus([_passage("h.txt", "Bill Blair", "We will table the bill in June.", question="When?",
                              question_speaker="Chair")], [bill])
    assert corpus.speakers_in_question("What were the unintended consequences of the Bill?")[0] == []
    assert corpus.speakers_in_question("What did Bill say about the budget?")[0] == ["Bill Blair"]
    assert corpus.speakers_in_question("What did Bill Blair say about the Bill?")[0] == ["Bill Blair"]


def test_a_value_the_question_takes_for_granted_that_the_passages_do_not_state(panel):
    engine = panel
    a = engine.ask("Why did the council raise the harbour budget by 20% in 2019?")
    assert a.premise == "value" and not a.abstained
    assert a.text.startswith("The passages found do not mention 2019 (the quote gives 2021) or 20% (the quote gives 12%).")
    assert "12% in 2021" in a.citations[0].quote
    # the values the passages do state: answered as asked
    b = engine.ask("Why did the council raise the harbour budget by 12% in 2021?")
    assert b.premise == "" and "12% in 2021" in b.citations[0].quote


def test_values_are_read_in_one_spelling():
    from rag._answer import unsupported_values, values_in

    assert values_in("In 2019 it rose 20%, or 20 per cent, to $5m; then $5 million, £1,200") == {
        "year": {"2019"}, "percent": {"20%"}, "money": {"$5 million", "£1200"}}
    assert unsupported_values("Did it rise by 20 per cent?", "It rose by 20%.", "It rose by 20%.") == []
    # no value of that kind in the quote: nothing to set against the question's
    assert unsupported_values("Why did it rise in 2019?", "It rose a lot.", "It rose a lot.") == []


def test_an_amount_no_passage_gives_is_said_before_the_nearest_quote(seed_engine):
    a = seed_engine.ask("How much money has NHS IMPACT been given?")
    assert a.premise == "type" and a.citations
    assert a.text.startswith("The passages found give no amount of money; this is the nearest they come. Amar Shah (AS) says")
    assert a.to_json()["premise"] == "type"
    # a time the passages do give, if loosely: answered as asked
    b = seed_engine.ask("When did Shah first come across quality improvement?")
    assert b.premise == "" and b.citations


def test_what_counts_as_giving_an_amount_or_a_time():
    from rag._answer import type_absent

    assert type_absent("amount", "The council gave the harbour a lot of support.") == "no amount of money"
    assert type_absent("amount", "The council raised the budget to £4 million.") == ""
    assert type_absent("amount", "It cost them two million in the end.") == ""
    assert type_absent("date", "We rebuilt the wall with the fishermen.") == "no date or time"
    for said in ("It broke in January.", "That was in 2021.", "We will announce it soon.", "In the coming weeks, yes."):
        assert type_absent("date", said) == "", said
    # only amounts and times: other kinds of answer are not checked
    assert type_absent("number", "We rebuilt the wall.") == "" and type_absent("other", "Nothing.") == ""
