"""'What is this interview about?': answered from the transcript's own parts (who takes part, its
introduction, the questions put in it, each quoted and cited to whoever said it), on transcripts
written for it: an interview with front matter and an introduction, a hearing with several
askers, and a talk with no questions."""

from __future__ import annotations

import pytest

from rag import Engine, ingest, load_settings
from rag._answer import _SELF, check_attribution, passage_sentences, spread
from rag._query import asks_about_record, asks_cast, asks_overview

INTERVIEW = """\
---
title: Making films on a shoestring
date: 2023-05-01
source: Weekend Radio, episode 12
speakers:
  TR: {name: Tom Reed, role: interviewer, description: Radio host (weekend show)}
  JD: {name: Jane Doe, role: interviewee, description: Film director}
---
In this conversation I asked Jane how she paid for her first film and what she would tell young directors.

TR: How did you pay for your first feature film?

JD: We had almost no budget. We borrowed cameras from a film school and shot the whole film in twelve days.

TR: Critics loved the soundtrack of the film. They compared it with the great scores of the seventies. Who wrote it?

JD: My brother composed the music on an old piano in our kitchen, late at night after his day job.

TR: What advice would you give young directors?

JD: Finish something. A short film you complete teaches you more than a feature you only plan.
"""

HEARING_QUESTIONS = [
    ("Ann Lee", "How many trains were late last winter?"),
    ("Bob Stone", "Why were the new carriages delivered a year after the date in the contract?"),
    ("Ann Lee", "What will the fare rise be in January?"),
    ("Cara Mills", "How many drivers are you training this year?"),
    ("Dev Patel", "What is the plan for the line to the airport?"),
    ("Bob Stone", "Who pays for the repairs to the station roof?"),
    ("Cara Mills", "Will the night trains run at weekends?"),
    ("Ann Lee", "When will the ticket machines accept cards?"),
    ("Dev Patel", "How will you cut the delays at the main junction?"),
    ("Bob Stone", "What did the safety review find about the signals?"),
]
HEARING = "---\ntitle: Rail services committee\nspeakers:\n  WIT: {name: Olav Lind, role: interviewee, description: Chief executive of the rail company}\n" + "".join(
    f"  {n.split()[0].upper()}: {{name: {n}, role: interviewer}}\n" for n in ("Ann Lee", "Bob Stone", "Cara Mills", "Dev Patel")
) + "---\n" + "\n".join(f"{n.split()[0].upper()}: {q}\n\nWIT: We are looking at that closely and will write to the committee about {q.split()[2]} soon.\n"
                         for n, q in HEARING_QUESTIONS)

TALK = """\
---
title: A lecture on bridges
speakers:
  LB: {name: Lena Berg, role: other, description: Engineer}
---
LB: Bridges fail for three reasons. The first is fatigue in the steel.

LB: The second reason is scour, the water washing away the ground under the piers.

LB: The third is overloading, when trucks heavier than the design limit cross.
"""

FILES = {"films.txt": INTERVIEW, "rail-committee.txt": HEARING, "bridges.txt": TALK}


@pytest.fixture(scope="module")
def settings(tmp_path_factory, embedder):
    folder = tmp_path_factory.mktemp("overview")
    for name, text in FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    s = load_settings(store=tmp_path_factory.mktemp("overview-store") / "store")
    assert not ingest([folder], s, embedder=embedder).failed
    return s


@pytest.fixture(scope="module")
def engine(settings, embedder):
    return Engine(settings, embedder=embedder)


@pytest.mark.parametrize("question", [
    "What is this interview about?", "What's the episode about?", "So what is the podcast all about?",
    "What topics does the interview cover?", "What topics were discussed?", "What was discussed in this meeting?",
    "Give me an overview of the conversation.", "Can you give me a short summary of this interview?",
    "Summarize this hearing", "Sum up the interview.", "What is the main topic of the talk?", "What questions were asked?",
])
def test_questions_about_a_transcript_as_a_whole(question):
    assert asks_overview(question)


@pytest.mark.parametrize("question", [
    "Give me an overview of what he says about learning from others.", "Summarize the discussion about the flaws.",
    "What did the meeting discuss about the school reopening date?", "What was discussed about loans?",
    "What is this about?", "What did the interviewer ask about the soundtrack?", "Who is the interviewer?",
])
def test_questions_about_a_subject_are_not_overviews(question):
    assert not asks_overview(question)


def _check(answer):
    assert not answer.abstained and answer.citations
    assert all(check_attribution(c) for c in answer.citations)
    assert [c.n for c in answer.citations] == list(range(1, len(answer.citations) + 1))
    assert [r.passage.chunk_id for r in answer.retrieved] == list(dict.fromkeys(c.passage.chunk_id for c in answer.citations))


def test_an_interview_is_described_by_its_cast_introduction_and_questions(engine):
    a = engine.ask("What is this interview about?", filters={"transcript": "films.txt"})
    _check(a)
    assert a.text.startswith("“Making films on a shoestring”: Tom Reed (TR; Radio host) asks the questions; "
                             "Jane Doe (JD; Film director) answers them.")  # the description's own brackets left out
    intro, *asked = a.citations
    assert intro.passage.kind == "introduction" and "how she paid for her first film" in intro.quote
    assert f"The introduction says: “{intro.quote}” [1]" in a.text
    assert [c.field for c in asked] == ["question"] * 3 and {c.speaker for c in asked} == {"Tom Reed"}
    assert {c.role for c in asked} == {"interviewer"}
    assert asked[0].quote == "How did you pay for your first feature film?"
    # a short question brings the sentence before it, which it leans on ("it" is the soundtrack)
    assert asked[1].quote == "They compared it with the great scores of the seventies. Who wrote it?"
    assert "The questions asked:\n- Tom Reed (TR): “How did you pay" in a.text
    assert "borrowed cameras" not in a.text  # the answers are not the overview


def test_a_long_hearing_gets_questions_spread_from_first_to_last_with_their_askers(engine, settings):
    settings.answer.overview_questions = 4
    try:
        a = engine.ask("Summarize this hearing.", filters={"transcript": "rail-committee.txt"})
    finally:
        settings.answer.overview_questions = 8
    _check(a)
    assert ("Ann Lee (ANN), Bob Stone (BOB), Cara Mills (CARA) and Dev Patel (DEV) ask the questions; "
            "Olav Lind (WIT; Chief executive of the rail company) answers them.") in a.text
    assert "4 of the 10 questions asked, from first to last:" in a.text
    quotes = [c.quote for c in a.citations]
    assert quotes == [q for _, q in spread(HEARING_QUESTIONS, 4)]
    assert quotes[0] == HEARING_QUESTIONS[0][1] and quotes[-1] == HEARING_QUESTIONS[-1][1]
    assert [c.speaker for c in a.citations] == [n for n, _ in spread(HEARING_QUESTIONS, 4)]


def test_a_talk_without_questions_is_quoted_in_order(engine):
    a = engine.ask("What is the main topic of the talk?", filters={"transcript": "bridges.txt"})
    _check(a)
    assert a.text.startswith("“A lecture on bridges”: Lena Berg (LB; Engineer) speaks.")
    assert "In order:" in a.text and len(a.citations) == 3
    assert a.citations[0].quote == "Bridges fail for three reasons."


def test_this_interview_is_the_one_the_conversation_is_on(engine):
    first = engine.ask("What did Jane Doe say about the budget?")
    assert first.citations[0].passage.transcript == "films.txt"
    a = engine.ask("What is this interview about?", history=[first])
    _check(a)
    assert {c.passage.transcript for c in a.citations} == {"films.txt"}


def test_with_no_transcript_named_each_is_described_or_listed(engine, settings):
    a = engine.ask("What is this interview about?")
    _check(a)
    assert {c.passage.transcript for c in a.citations} == set(FILES)
    settings.answer.overview_transcripts = 2
    try:
        listed = engine.ask("What is this interview about?")
    finally:
        settings.answer.overview_transcripts = 3
    assert not listed.abstained and not listed.citations
    assert listed.text.startswith("3 transcripts are searched: ")
    assert all(f"“{t}”" in listed.text for t in ("Making films on a shoestring", "Rail services committee", "A lecture on bridges"))


def test_the_rule_can_be_switched_off(engine, settings):
    settings.planning.overview = False
    try:
        a = engine.ask("What is this interview about?", filters={"transcript": "films.txt"})
    finally:
        settings.planning.overview = True
    assert "The questions asked" not in a.text


def test_filters_choose_the_transcripts_and_none_left_is_a_refusal(engine):
    a = engine.ask("What is this interview about?", filters={"speaker": "Olav Lind"})
    _check(a)
    assert {c.passage.transcript for c in a.citations} == {"rail-committee.txt"}
    none = engine.ask("What is this interview about?", filters={"transcript": "no-such-file.txt"})
    assert none.abstained and not none.citations and not none.retrieved


def test_who_takes_part_is_the_overview_first_line(engine):
    a = engine.ask("Who are the speakers?", filters={"transcript": "films.txt"})
    assert not a.abstained and not a.citations
    assert a.text == ("“Making films on a shoestring”: Tom Reed (TR; Radio host) asks the questions; "
                      "Jane Doe (JD; Film director) answers them.")


@pytest.mark.parametrize("question, cast", [
    ("Who is in this interview?", True), ("Who are the speakers?", True), ("Who takes part in the hearing?", True),
    ("Who is speaking?", True), ("Who spoke about Bangladesh?", False), ("Who is the interviewer?", False),
])
def test_questions_about_who_takes_part(question, cast):
    assert asks_cast(question) is cast


@pytest.mark.parametrize("sentence, says_who", [
    ("I trained as a clinician and came to improvement late.", True),
    ("I’m still a practising clinician, two days a week.", True),
    ("I guess becoming National Clinical Director for Improvement is an opportunity.", True),
    ("In my role as chief executive I see every complaint.", True),
    ("I was appointed Chief Nurse in 2019.", True),
    ("I am a bit worried about the winter.", False),
    ("I'm not sure that is right.", False),
    ("We became a better team.", False),
])
def test_sentences_in_which_a_speaker_says_who_they_are(sentence, says_who):
    assert bool(_SELF.search(sentence)) is says_who


RAW = """\
In this conversation I asked Nadia about the night shift.

KB: What is the hardest part of nights?

NO: I'm a staff nurse on the children's ward, and I've worked nights for six years. The hardest part is the last two hours.

KB: What would you change?

NO: More staff between four and six in the morning. I was a ward sister before, and I know what it takes.
"""


def test_who_is_a_speaker_the_transcript_does_not_describe_quotes_what_they_say_of_themselves(tmp_path, embedder):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "nights.txt").write_text(RAW, encoding="utf-8")
    s = load_settings(store=tmp_path / "store")
    assert not ingest([tmp_path / "in"], s, embedder=embedder).failed
    a = Engine(s, embedder=embedder).ask("Who is NO?")
    assert not a.abstained and len(a.citations) == 2
    assert all(check_attribution(c) and c.speaker == "NO" and c.field == "text" for c in a.citations)
    assert [c.quote for c in a.citations] == [
        "I'm a staff nurse on the children's ward, and I've worked nights for six years.",
        "I was a ward sister before, and I know what it takes."]
    assert a.text.startswith("NO answers the questions in ")
    assert "NO says: “I'm a staff nurse on the children's ward, and I've worked nights for six years.” [1] “I was" in a.text
    assert [r.passage.chunk_id for r in a.retrieved] == [c.passage.chunk_id for c in a.citations]


# ---------------------------------------------------------------------------- key points

@pytest.mark.parametrize("question", [
    "What are the key takeaways from this interview?", "What are the main points?", "Main points?",
    "Give me the key points of the interview", "Summarize what was said.",
])
def test_key_points_of_an_interview_one_sentence_per_answer_first_to_last(engine, question):
    a = engine.ask(question, filters={"transcript": "films.txt"})
    _check(a)
    assert a.text.startswith("Key points of what Jane Doe (JD) says in “Making films on a shoestring”, from first to last:\n- “")
    answers = [p for p in engine.passages("films.txt") if p.kind == "answer"]
    assert [c.passage.chunk_id for c in a.citations] == [p.chunk_id for p in answers]  # one per answer, in order
    for c, p in zip(a.citations, answers):
        assert c.speaker == "Jane Doe" and c.field == "text"
        assert c.quote in [p.text[x:y] for x, y in passage_sentences(p)]  # one whole sentence of it
    assert a.citations[1].quote.startswith("My brother composed the music")


def test_key_points_of_a_named_person_spread_over_a_long_hearing(engine, settings):
    a = engine.ask("Summarize what Olav Lind said")
    _check(a)
    assert engine.retrieve("What were the main points Olav Lind made?")[0].key_points
    assert a.text.startswith("Key points of what Olav Lind (WIT) says in “Rail services committee”, from first to last:")
    answers = [p for p in engine.passages("rail-committee.txt") if p.kind == "answer"]
    assert len(answers) == 10 and len(a.citations) == settings.answer.key_points == 6
    assert [c.passage.chunk_id for c in a.citations] == [p.chunk_id for p in spread(answers, 6)]
    assert {c.speaker for c in a.citations} == {"Olav Lind"}


@pytest.mark.parametrize("question", ["What are the main points of the soundtrack?", "What are the key lessons from Bangladesh?",
                                      "What were the main points Jane Doe made about the budget?"])
def test_main_points_about_a_subject_are_a_question_about_it(engine, question):
    query, _, _ = engine.retrieve(question)
    assert not query.key_points and not query.overview


def test_readers_comments_are_not_the_interviews_key_points_unless_asked_for(seed_store, embedder):
    e = Engine(seed_store, embedder=embedder)
    a = e.ask("What are the key takeaways from this interview?")
    _check(a)
    assert a.citations and all(c.passage.kind == "answer" and c.speaker == "Amar Shah" for c in a.citations)
    reader = e.ask("Summarize what the reader said")
    _check(reader)
    assert [c.passage.kind for c in reader.citations] == ["comment"]


@pytest.mark.parametrize("question, field", [
    ("When was this interview recorded?", "date"), ("What is the date of the interview?", "date"),
    ("When did the hearing take place?", "date"), ("Where was this interview published?", "source"),
    ("When did she make her first film?", ""), ("Where was the film shot?", ""),
])
def test_questions_about_when_and_where_a_transcript_was_made(question, field):
    assert asks_about_record(question) == field


def test_when_and_where_from_the_front_matter_and_says_when_it_is_not_given(engine):
    a = engine.ask("When was this interview recorded?", filters={"transcript": "films.txt"})
    assert not a.abstained and a.text == "“Making films on a shoestring”: 2023-05-01."
    a = engine.ask("Where was this interview published?", filters={"transcript": "films.txt"})
    assert a.text == "“Making films on a shoestring”: Weekend Radio, episode 12."
    a = engine.ask("When was the interview recorded?")
    assert a.text.splitlines() == ["“Making films on a shoestring”: 2023-05-01.",
                                   "“A lecture on bridges” and “Rail services committee” give no date."]


def test_key_points_without_passage_vectors_in_memory_use_the_answers_centre(engine, monkeypatch):
    monkeypatch.setattr(engine.index(), "vectors", None)
    a = engine.ask("What are the key takeaways from this interview?", filters={"transcript": "films.txt"})
    _check(a)
    assert len(a.citations) == 3 and a.citations[1].quote.startswith("My brother composed the music")


def test_what_did_x_say_is_their_key_points_when_they_say_a_lot(engine, settings):
    query, _, _ = engine.retrieve("What did Olav Lind say?")  # ten answers
    assert query.key_points
    a = engine.ask("What did Olav Lind say?")
    assert a.text.startswith("Key points of what Olav Lind (WIT) says in “Rail services committee”")
    assert not engine.retrieve("What did Jane Doe say?")[0].key_points  # three answers: asked as any other
    assert not engine.retrieve("What did Olav Lind say about the signals?")[0].key_points  # a subject
    settings.answer.said_points = 0
    try:
        assert not engine.retrieve("What did Olav Lind say?")[0].key_points
    finally:
        settings.answer.said_points = 6


# ---------------------------------------------------------------------------- with a language model

def test_with_a_language_model_it_writes_the_overview_from_the_interviews_parts(engine, settings):
    from fakes import FailingFakeChatModel, RecordingFakeChatModel

    from rag._answer import REFUSAL

    fake = RecordingFakeChatModel(["Tom Reed asks Jane Doe how she paid for her first feature film [2]."])
    e = Engine(settings, embedder=engine.embedder, chat_model=fake)
    a = e.ask("What is this interview about?", filters={"transcript": "films.txt"})
    user = fake.prompts[-1][1].content
    assert "In this conversation I asked Jane" in user and "Who wrote it?" in user  # the overview's parts
    assert a.text.startswith("Tom Reed asks Jane Doe") and [c.passage.chunk_id for c in a.citations] == ["films.txt#t1-2"]
    # a refusal or a failure leaves the extractive overview
    for model in (RecordingFakeChatModel([REFUSAL]), FailingFakeChatModel()):
        a = Engine(settings, embedder=engine.embedder, chat_model=model).ask("What is this interview about?",
                                                                             filters={"transcript": "films.txt"})
        assert not a.abstained and a.text.startswith("“Making films on a shoestring”: Tom Reed (TR; Radio host)")
    assert "extractive" in a.notice


def test_what_a_transcript_is_called_is_a_setting(engine, settings):
    assert not asks_overview("What is this deposition about?")
    assert asks_overview("What is this deposition about?", ("deposition",))
    assert asks_overview("What are the depositions about?", ("deposition",))  # plurals
    settings.planning.transcript_words = [*settings.planning.transcript_words, "deposition"]
    try:
        a = engine.ask("What is this deposition about?", filters={"transcript": "films.txt"})
    finally:
        settings.planning.transcript_words = settings.planning.transcript_words[:-1]
    assert a.text.startswith("“Making films on a shoestring”:")
