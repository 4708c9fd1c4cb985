"""Query planning (rag/_query.py): speakers named by name, first name, surname, role and title;
the transcripts a question names; the expected answer type; follow-ups. Plain strings against a
``Corpus`` of a few hand-made records, then end to end on two small interviews of our own with
the real store and model."""

from __future__ import annotations

import pytest

from rag import Engine, ingest, load_settings
from rag._query import Corpus, HistoryTurn, answer_type, plan, resolve, scope_of, topic_of
from rag._records import Passage, Segment, Speaker


def _passage(transcript: str, speaker: str, text: str, *, question: str = "", question_speaker: str = "",
             kind: str = "answer", role: str = "interviewee", title: str = "", n: int = 0) -> Passage:
    return Passage(
        chunk_id=f"{transcript}#t{n}", transcript=transcript, title=title or transcript, date="", kind=kind,
        speaker=speaker, role=role, text=text, segments=[Segment(text, 0)], turns=(n, n), start_char=0,
        end_char=len(text), question=question, question_speaker=question_speaker,
    )


def _no_rarity(word: str) -> float:
    return 0.0


AMAR = Speaker("AS", "Amar Shah", "interviewee", names=["Amar Shah", "Amar", "AS"])
PP = Speaker("PP", "PP", "interviewer")
JANE = Speaker("JD", "Jane Doe", "interviewee", "Film director and screenwriter")
TOM = Speaker("TR", "Tom Reed", "interviewer", "Radio host")


def _amar_corpus() -> Corpus:
    t = "amar.txt"
    return Corpus([
        _passage(t, "", "In my conversation with Amar I asked him about waiting lists.", kind="introduction",
                 role="other", title="A conversation with Amar Shah"),
        _passage(t, "Amar Shah", "Waiting lists grew because we lack beds.", question="What about waiting lists?",
                 question_speaker="PP", title="A conversation with Amar Shah", n=1),
    ], [AMAR, PP])


def _two_corpus() -> Corpus:
    return Corpus([
        _passage("amar.txt", "Amar Shah", "Waiting lists grew because we lack beds.", question="What about waiting lists?",
                 question_speaker="PP", title="A conversation with Amar Shah", n=1),
        _passage("interview-with-jane-doe.txt", "Jane Doe", "We shot the film in twelve days on a tiny budget.",
                 question="How did you pay for the film?", question_speaker="Tom Reed",
                 title="Making films on a shoestring", n=1),
    ], [AMAR, PP, JANE, TOM])


# ---------------------------------------------------------------------------- speakers by name


@pytest.mark.parametrize("question", [
    "What did Amar Shah say about waiting lists?",
    "What did Amar say about waiting lists?",
    "What did Shah say about waiting lists?",
    "Why does Shah think waiting lists grew?",
])
def test_a_linked_speaker_is_found_by_full_name_first_name_and_surname(question):
    q = plan(question, [], _amar_corpus(), None, _no_rarity)
    assert q.speakers == ["Amar Shah"]
    assert q.unknown_names == []  # "Shah" alone is his surname, not a name the corpus lacks


def test_a_name_the_corpus_never_mentions_is_unknown():
    q = plan("What did Amar say about France?", [], _amar_corpus(), None, _no_rarity)
    assert q.speakers == ["Amar Shah"]
    assert q.unknown_names == ["France"]


# ---------------------------------------------------------------------------- roles and titles


@pytest.mark.parametrize("question, roles, speakers", [
    ("What did the interviewer ask about budgets?", ["interviewer"], []),
    ("What did the guest say about budgets?", ["interviewee"], []),
    # "host" is a role word and also the head noun of Tom Reed's description ("Radio host")
    ("What did the host say about budgets?", ["interviewer"], ["Tom Reed"]),
    ("What did they say about budgets?", [], []),
])
def test_roles_by_role_words(question, roles, speakers):
    q = plan(question, [], _two_corpus(), None, _no_rarity)
    assert q.roles == roles
    assert q.speakers == speakers


def test_a_title_with_the_descriptions_head_noun_names_the_speaker():
    corpus = _two_corpus()
    assert plan("What did the director say about the budget?", [], corpus, None, _no_rarity).speakers == ["Jane Doe"]
    assert plan("What did the film director say about the budget?", [], corpus, None, _no_rarity).speakers == ["Jane Doe"]
    # "film" alone is a modifier of her title, not a reference to her
    assert plan("What was said about the film budget?", [], corpus, None, _no_rarity).speakers == []


# ---------------------------------------------------------------------------- transcript scope


def test_scope_by_the_person_interviewed_by_title_and_by_nobody():
    corpus = _two_corpus()
    assert scope_of("In the interview with Jane Doe, what did she say about money?", corpus) == ["interview-with-jane-doe.txt"]
    assert scope_of("In the conversation with Amar Shah, what did he say about beds?", corpus) == ["amar.txt"]
    assert scope_of("In Making films on a shoestring, what was said about money?", corpus) == ["interview-with-jane-doe.txt"]
    assert scope_of("What was said about money?", corpus) == []
    q = plan("In the interview with Jane Doe, what did she say about money?", [], corpus, None, _no_rarity)
    assert q.scope == ["interview-with-jane-doe.txt"]
    assert q.filters["transcript"] == "interview-with-jane-doe.txt"
    # an explicit transcript filter is not overridden
    q = plan("In the interview with Jane Doe, what did she say?", [], corpus, {"transcript": "amar.txt"}, _no_rarity)
    assert q.filters["transcript"] == "amar.txt"


# ---------------------------------------------------------------------------- answer type


@pytest.mark.parametrize("question, expected", [
    ("In what year did she become CTO?", "date"),
    ("When did the programme start?", "date"),
    ("How much cash did the bank pay?", "amount"),
    ("What was the cost of the new theatres?", "amount"),
    ("How many nurses were trained?", "number"),
    ("How much of the work is done with partners?", "number"),  # a share, not money
    ("Who chaired the committee?", "person"),
    ("Which company built the hospital?", "organisation"),
    ("Why did waiting lists grow?", "reason"),
    ("Summarize the discussion about waiting lists.", "summary"),
    ("What can we learn from Bangladesh?", "other"),
])
def test_answer_type(question, expected):
    assert answer_type(question) == expected


def test_topic_strips_request_phrasing():
    assert topic_of("Summarize the discussion about waiting lists") == "waiting lists"
    assert topic_of("What can we learn from Bangladesh?") == "What can we learn from Bangladesh?"
    assert topic_of("Give me an overview of what he says about learning from others.") == "what he says about learning from others."
    assert topic_of("Give us a brief summary of school meals") == "school meals"


# ---------------------------------------------------------------------------- follow-ups


RARITY = {"bangladesh": 6.0, "learn": 1.5, "bains": 7.0, "business": 3.0, "loans": 4.0, "say": 0.5}.get


def _rarity(word: str) -> float:
    return RARITY(word, 0.0)


def test_and_x_swaps_the_earlier_questions_subject():
    r = resolve("and Uganda?", [HistoryTurn("What can we learn from Bangladesh?")], None, _rarity)
    assert r.followup
    assert r.text == "What can we learn from Uganda?"


def test_a_new_question_is_not_a_followup():
    r = resolve("What did Amar say about beds?", [HistoryTurn("What can we learn from Bangladesh?")], None, _rarity)
    assert not r.followup
    assert r.text == "What did Amar say about beds?"


def test_why_does_he_think_that_keeps_the_question_and_carries_the_speaker():
    prev = HistoryTurn("What did Amar say about waiting lists?", filters={"transcript": "amar.txt"},
                       speaker="Amar Shah", speakers=["Amar Shah"])
    q = plan("why does he think that?", [prev], _amar_corpus(), None, _rarity)
    assert q.followup
    assert "why does he think that?" in q.text
    assert "What did Amar say about waiting lists?" in q.text
    assert q.speakers == ["Amar Shah"]
    assert q.filters == {"transcript": "amar.txt"}


def test_and_about_a_new_topic_keeps_the_speaker_and_replaces_the_whole_topic():
    prev = HistoryTurn("What did Bains say about business loans?", speaker="Bains", speakers=["Bains"])
    r = resolve("and about the arts and culture sector?", [prev], None, _rarity)
    assert r.followup
    assert r.text == "What did Bains say about the arts and culture sector?"


# ---------------------------------------------------------------------------- end to end

AMAR_TXT = """\
# A conversation with Amar Shah

In my conversation with Amar about his new role at the hospital trust, I asked him about waiting lists, the training of new nurses and what he learned from his first year.

PP: Your predecessor was criticised over ambulance handover delays outside the emergency department. What did you take from that?

AS: I learned that you cannot fix a system from the top. You have to listen to the staff on the wards and let them design the changes themselves.

PP: What will you do about waiting lists?

AS: Waiting lists have grown because we lack beds and surgeons. We will open two new operating theatres and run weekend clinics, and we expect to cut the waiting lists by half within two years.

PP: How do you train new nurses?

AS: Every new nurse spends six months with a mentor on the ward before working alone, and the ambulance crews spend a week with us as well.
"""

JANE_TXT = """\
---
title: Making films on a shoestring
date: 2023-05-01
speakers:
  TR: {name: Tom Reed, role: interviewer, description: Radio host}
  JD: {name: Jane Doe, role: interviewee, description: Film director and screenwriter}
---
TR: How did you pay for your first feature film?

JD: We had almost no budget. We borrowed cameras from a film school, the actors worked for a share of the profits, and we shot the whole film in twelve days.

TR: Critics loved the soundtrack of the film. Who wrote the music?

JD: My brother composed the music on an old piano in our kitchen, late at night after his day job.

TR: What advice would you give young directors?

JD: Finish something. A short film you complete teaches you more than a feature you only plan.
"""

JANE_ID = "interview-with-jane-doe.txt"
AMAR_ID = "amar-shah.txt"


@pytest.fixture(scope="module")
def engine(tmp_path_factory, embedder):
    folder = tmp_path_factory.mktemp("interviews")
    (folder / AMAR_ID).write_text(AMAR_TXT, encoding="utf-8")
    (folder / JANE_ID).write_text(JANE_TXT, encoding="utf-8")
    s = load_settings(store=tmp_path_factory.mktemp("interviews-store") / "store")
    assert not ingest([folder], s, embedder=embedder).failed
    return Engine(s, embedder=embedder)


@pytest.mark.parametrize("question", [
    "What did Amar Shah say about waiting lists?",
    "What did Amar say about waiting lists?",
    "What did Shah say about waiting lists?",
])
def test_initials_tagged_guest_found_by_name_and_his_answer_ranks_first(engine, question):
    query, _, retrieved = engine.retrieve(question)
    assert query.speakers == ["Amar Shah"]
    assert "Shah" not in query.unknown_names
    top = retrieved[0].passage
    assert top.kind == "answer"
    assert top.speaker == "Amar Shah"
    assert "operating theatres" in top.text  # his answer on the topic, not the introduction


def test_front_matter_roles_and_title_words(engine):
    q, _, _ = engine.retrieve("What did the interviewer ask about the soundtrack?")
    assert q.roles == ["interviewer"]
    q, _, _ = engine.retrieve("What did the guest say about the budget?")
    assert q.roles == ["interviewee"]
    q, retrieved_q, retrieved = engine.retrieve("What did the director say about the budget?")
    assert q.speakers == ["Jane Doe"]
    assert retrieved[0].passage.speaker == "Jane Doe"
    assert "borrowed cameras" in retrieved[0].passage.text


def test_what_the_interviewer_said_ranks_the_passage_whose_question_is_on_the_topic(engine):
    _, _, retrieved = engine.retrieve("What did the interviewer say about ambulance handover delays?")
    top = retrieved[0].passage
    assert top.question_speaker == "PP"
    assert "ambulance handover delays" in top.question


def test_a_speaker_filter_naming_the_interviewer_returns_passages_where_he_asked(engine):
    a = engine.ask("What did he ask about music?", filters={"speaker": "Tom Reed"})
    assert a.retrieved
    assert all("Tom Reed" in (r.passage.speaker, r.passage.question_speaker) for r in a.retrieved)
    assert any(r.passage.question_speaker == "Tom Reed" for r in a.retrieved)
    assert "soundtrack" in a.retrieved[0].passage.question


def test_a_question_naming_the_interviewee_is_scoped_to_her_interview(engine):
    q = "In the interview with Jane Doe, what did she say about music?"
    query, _, retrieved = engine.retrieve(q)
    assert query.scope == [JANE_ID]
    assert retrieved and all(r.passage.transcript == JANE_ID for r in retrieved)
    a = engine.ask(q)
    assert a.retrieved and all(r.passage.transcript == JANE_ID for r in a.retrieved)


def test_a_question_naming_a_title_is_scoped_and_one_naming_nobody_is_not(engine):
    query, _, retrieved = engine.retrieve("In Making films on a shoestring, what was said about money?")
    assert query.scope == [JANE_ID]
    assert all(r.passage.transcript == JANE_ID for r in retrieved)
    query, _, retrieved = engine.retrieve("What was said about money?")
    assert query.scope == []
    assert {r.passage.transcript for r in retrieved} == {JANE_ID, AMAR_ID}


def test_a_lower_case_word_the_transcripts_use_as_a_word_is_not_a_name():
    kate = Speaker("KY", "Ms. Kate Young", "other")
    corpus = Corpus([_passage("h.txt", "Ms. Kate Young", "Many young people wait a year for help.",
                              question="How long?", question_speaker="Chair")], [kate])
    assert corpus.speakers_in_question("What was said about the health of young people?")[0] == []
    assert corpus.speakers_in_question("What did Young say about waiting times?")[0] == ["Ms. Kate Young"]
    # a question written wholly in lower case may name anyone
    assert corpus.speakers_in_question("what did young say about waiting times?")[0] == ["Ms. Kate Young"]


def test_the_whole_name_written_picks_the_person_among_those_sharing_a_surname():
    steven = Speaker("SB", "Hon. Steven Blaney", "interviewer")
    david = Speaker("DB", "Dr David Blaney", "interviewee")
    # three speakers called David: "David" alone names no one in particular
    hefin, rees = Speaker("HD", "Hefin David AM", "interviewer"), Speaker("DR", "David Rees AM", "interviewer")
    corpus = Corpus([
        _passage("a.txt", "Hon. Steven Blaney", "Will the minister act?", question="", question_speaker=""),
        _passage("b.txt", "Dr David Blaney", "Applications from the EU fell.", question="Why?",
                 question_speaker="Hefin David AM"),
    ], [steven, david, hefin, rees])
    assert corpus.speakers_in_question("What did Dr. David Blaney say about Brexit?")[0] == ["Dr David Blaney"]
    assert corpus.speakers_in_question("What did Steven Blaney ask?")[0] == ["Hon. Steven Blaney"]
    assert sorted(corpus.speakers_in_question("What did Blaney say?")[0]) == ["Dr David Blaney", "Hon. Steven Blaney"]


# ---------------------------------------------------------------------------- "Who is X?"


@pytest.mark.parametrize("question, who_is", [
    ("Who is Amar Shah?", True),
    ("who's Amar", True),
    ("Tell me about the interviewer.", True),
    ("Who is AS?", True),
    ("Who is speaking about waiting lists?", False),  # a subject besides the person
    ("What did Amar Shah say?", False),
    ("Who is Zebedee Smith?", False),  # nobody the corpus knows
])
def test_who_is_asks_who_the_named_people_are(question, who_is):
    q = plan(question, [], _amar_corpus(), None, _no_rarity)
    assert q.who_is is who_is
    if who_is:
        # the answer's sentences are judged against what the transcripts say the person is
        assert q.embed_text == q.evidence_text
        assert ("Amar Shah" in q.embed_text) or ("PP" in q.embed_text)


def test_a_tag_in_capitals_that_is_a_common_word_names_its_speaker_only_in_capitals():
    corpus = _amar_corpus()  # Amar Shah is tagged AS
    assert corpus.speakers_in_question("What did AS say about waiting lists?")[0] == ["Amar Shah"]
    assert corpus.speakers_in_question("What was said as the lists grew?")[0] == []
    assert corpus.speakers_in_question("what did as say about waiting lists")[0] == []


def test_who_is_answers_from_the_speaker_list_and_quotes_only_the_persons_words(engine):
    a = engine.ask("Who is Jane Doe?")
    assert not a.abstained
    assert a.text.startswith("Jane Doe (JD; Film director and screenwriter) answers the questions in "
                             "“Making films on a shoestring”.")
    assert all(c.speaker == "Jane Doe" for c in a.citations)
    a = engine.ask("Who are the interviewers?")  # a role: the interviewers of both interviews
    assert "Tom Reed (TR; Radio host) asks the questions in “Making films on a shoestring”." in a.text
    assert "PP asks the questions in “A conversation with Amar Shah”." in a.text
    assert all(c.speaker in ("Tom Reed", "PP") for c in a.citations)


def test_many_holders_of_a_role_are_listed_not_described():
    from rag._answer import role_holders, who_is

    names = [f"Member {n}" for n in range(1, 11)]
    assert role_holders("interviewer", names) == (
        "10 people ask the questions in the transcripts searched: Member 1, Member 2, Member 3, Member 4, "
        "Member 5, Member 6, Member 7, Member 8 and 2 more.")
    many = [(Speaker("PM", "Pat Moe", "interviewee", "Minister"), f"Hearing {n}") for n in range(1, 6)]
    assert who_is(many) == "Pat Moe (PM; Minister) answers the questions in “Hearing 1”, “Hearing 2”, “Hearing 3” and 2 more."


@pytest.mark.parametrize("question", ["What is Jane Doe's job?", "What does Jane Doe do?", "Who's JD?"])
def test_what_a_person_does_is_a_who_is_question(engine, question):
    a = engine.ask(question)
    assert not a.abstained
    assert a.text.startswith("Jane Doe (JD; Film director and screenwriter) answers the questions in ")


def test_who_is_he_after_an_answer_describes_the_person_quoted(engine):
    first = engine.ask("What did Jane Doe say about the budget?")
    a = engine.ask("What is her job?", history=[first])
    assert a.resolved_question == "What is Jane Doe's job?"
    assert a.text.startswith("Jane Doe (JD; Film director and screenwriter)")


def test_who_is_a_reader_who_commented(seed_store, embedder):
    engine = Engine(seed_store, embedder=embedder)
    comment = engine.ask("What did the reader say?")
    a = engine.ask("Who is she?", history=[comment])
    assert not a.abstained
    assert a.text.startswith("Thomas John Rose (a reader, 23 Feb 2024) commented on “NHS IMPACT: in conversation with Amar Shah”.")
