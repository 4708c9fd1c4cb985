"""How questions refer to speakers by title ("the prime minister", "the Minister of Seniors"), on
a small hearing of our own, with the real store and model."""

from __future__ import annotations

import pytest

from rag import Engine, ingest, load_settings
from rag._records import Speaker
from rag._query import Corpus

HEARING = """\
The Chair: Order. We resume the committee's questions to ministers.

Mr. Adam Price (Riverside, CPC): Mr. Chair, young people cannot find summer jobs this year. What will the government do for them?

Right Hon. Helen Marsh (Prime Minister): Mr. Chair, we created a benefit for students who cannot find work, and we doubled the grants so that tuition is covered.

Mr. Adam Price: The Prime Minister travels a lot. Is the Prime Minister in difficulty with his own caucus, Prime Minister?

Right Hon. Helen Marsh: No, Mr. Chair. We work hard every day for all Canadians.

Mr. Adam Price: Does the Prime Minister think the Prime Minister's office answers letters from the Prime Minister's own members?

Right Hon. Helen Marsh: Mr. Chair, every letter gets a reply, and I read many of them myself.

Mr. Adam Price: Will the Prime Minister say what the Prime Minister promised in the last campaign?

Right Hon. Helen Marsh: Mr. Chair, we keep our promises, and we will keep working for families.

Ms. Nora Quinn (Lakeview, NDP): My question is for the Minister of Seniors. Will seniors get help with groceries?

Hon. Paul Ortiz (Minister of Seniors): Mr. Chair, a one-time payment goes to every senior who receives the pension, and it arrives next month.

Ms. Nora Quinn: The seniors care crisis in long-term care homes is a national shame. What is the plan for care homes?

Hon. Rita Bello (Deputy Prime Minister and Minister of Industry, Science and Trade): Mr. Chair, we sent the army to the care homes and we will set national standards for long-term care.
"""


def _index(*speakers: Speaker) -> Corpus:
    return Corpus([], list(speakers))


class _Named:
    """What ``Corpus.neutralize`` reads of a plan: the speakers it names."""

    def __init__(self, speakers: list[str]) -> None:
        self.speakers = speakers


MINISTERS = (
    Speaker("PM", "Right Hon. Helen Marsh", "interviewee", "Prime Minister"),
    Speaker("DPM", "Hon. Rita Bello", "interviewee", "Deputy Prime Minister and Minister of Industry, Science and Trade"),
    Speaker("MS", "Hon. Paul Ortiz", "interviewee", "Minister of Seniors"),
    Speaker("CH", "The Chair", "other"),
)


@pytest.mark.parametrize("question, expected", [
    ("What did the Prime Minister say about students?", ["Right Hon. Helen Marsh"]),  # the whole title beats "Deputy Prime Minister"
    ("What did the Minister of Seniors say about groceries?", ["Hon. Paul Ortiz"]),
    ("What did the deputy prime minister say?", ["Hon. Rita Bello"]),
    ("What did the chair say?", ["The Chair"]),
    ("What did Ortiz say?", ["Hon. Paul Ortiz"]),
    # a title's modifier or the list in its complement is not a reference to the speaker
    ("What was said about the seniors care crisis?", []),
    ("How will they protect the seniors?", []),
    ("What about the science budget?", []),
    ("What did they say about the industry?", []),
])
def test_title_references_need_the_head_noun(question, expected):
    assert _index(*MINISTERS).speakers_in_question(question)[0] == expected


def test_lexical_text_drops_title_references_but_keeps_names():
    ix = _index(*MINISTERS)
    pm = ["Right Hon. Helen Marsh"]
    assert ix.lexical_text("What did the Prime Minister say about students?", pm) == "What did they say about students?"
    # names match the speaker and asker fields of the index: they stay
    assert ix.lexical_text("What did Marsh say about students?", pm) == "What did Marsh say about students?"
    # named by name, the title is part of the subject
    q = "Why did Helen Marsh want the prime minister job?"
    assert ix.lexical_text(q, pm) == q
    assert ix.lexical_text("What did the Prime Minister say?", []) == "What did the Prime Minister say?"
    assert ix.neutralize("What did the Minister of Seniors say about groceries?", _Named(["Hon. Paul Ortiz"])) == \
        "What did they say about groceries?"


@pytest.fixture(scope="module")
def hearing(tmp_path_factory, embedder):
    folder = tmp_path_factory.mktemp("hearing")
    (folder / "hearing.txt").write_text(HEARING, encoding="utf-8")
    s = load_settings(store=tmp_path_factory.mktemp("hearing-store") / "store")
    assert not ingest([folder], s, embedder=embedder).failed
    return Engine(s, embedder=embedder)


def test_question_by_title_ranks_that_speakers_answer_on_the_topic_first(hearing):
    a = hearing.ask("What did the Prime Minister say about students?")
    top = a.retrieved[0].passage
    assert top.speaker == "Right Hon. Helen Marsh"
    assert "benefit for students" in top.text  # not the answer to a question that only mentions the Prime Minister
    assert any("student" in c.quote for c in a.citations)


def test_a_modifier_that_looks_like_a_title_does_not_pick_the_speaker(hearing):
    a = hearing.ask("What was said about the seniors care crisis?")
    query, _, _ = hearing.retrieve("What was said about the seniors care crisis?")
    assert query.speakers == []
    assert a.retrieved[0].passage.speaker == "Hon. Rita Bello"
