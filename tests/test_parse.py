"""Parsing and chunking, format by format, on small fixtures written here.

Every passage is checked the same way (``check``): its segments are verbatim slices of the
decoded source, ``source[start_char:end_char]`` covers all of them, its chunk id says where it
is, and its embedded text fits the model window as the real tokenizer counts it.
"""

from __future__ import annotations

import json
import random
import re

import pytest

from conftest import SEED
from rag import TranscriptError, parse_bytes, parse_text
from rag._chunk import QUESTION_TOKEN_CAP, TAIL_MIN_TOKENS, chunk_transcript
from rag._records import Passage, Transcript, join_segments


# ----------------------------------------------------------------------------- helpers


def chunks(t: Transcript, embedder) -> list[Passage]:
    return chunk_transcript(t, embedder.count_tokens, embedder.max_tokens)


def check(t: Transcript, passages: list[Passage], embedder) -> None:
    """Offsets, ids and window size of every passage."""
    assert passages, "nothing indexed"
    for p in passages:
        assert p.transcript == t.id
        assert 0 <= p.start_char <= p.end_char <= len(t.text)
        assert join_segments(p.segments) == p.text
        for s in p.segments:
            if s.verbatim:
                assert t.text[s.start : s.end] == s.text, (p.chunk_id, s)
            assert p.start_char <= s.start and s.end <= p.end_char, (p.chunk_id, s, p.start_char, p.end_char)
        first, last = p.turns
        expected = f"{t.id}#t{first}" + (f"-{last}" if last != first else "") + (f"/p{p.part}" if p.part else "")
        assert p.chunk_id == expected
        assert embedder.count_tokens([p.embed_text])[0] + 2 <= embedder.max_tokens, p.chunk_id
    ids = [p.chunk_id for p in passages]
    assert len(ids) == len(set(ids)), "chunk ids must be unique"
    # split answers are numbered 1..n, all with the same question
    by_turns: dict[tuple[int, int], list[Passage]] = {}
    for p in passages:
        by_turns.setdefault(p.turns, []).append(p)
    for group in by_turns.values():
        if len(group) > 1:
            assert [p.part for p in group] == list(range(1, len(group) + 1))
            assert len({p.question for p in group}) == 1
            assert all(p.embed_question for p in group) or not group[0].question


def acts(t: Transcript) -> list[tuple[str | None, str]]:
    return [(turn.speaker, turn.act) for turn in t.turns]


def roles(t: Transcript) -> dict[str, str]:
    return {k: s.role for k, s in t.speakers.items()}


# ----------------------------------------------------------------------------- plain text

PLAIN = """Barry Hughes: Good morning, and thank you for joining us today. What did you find when you first arrived at the hospital?

Anna Smith: I found a team under a lot of pressure, with waiting lists growing every month.
We started by measuring how long each step of the referral took.

Most of the delay was in booking, not in clinics.

Barry Hughes: How did you fix the booking delay?

Anna Smith: We moved booking to the clinical teams themselves, so that a referral was booked the same day it arrived.
"""


def test_full_name_tags_untagged_paragraphs_continue_the_turn(embedder):
    t = parse_text(PLAIN, "plain.txt")
    assert t.format == "text"
    assert t.title == "plain"
    assert set(t.speakers) == {"Barry Hughes", "Anna Smith"}
    assert roles(t) == {"Barry Hughes": "interviewer", "Anna Smith": "interviewee"}
    assert acts(t) == [("Barry Hughes", "question"), ("Anna Smith", "answer"), ("Barry Hughes", "question"), ("Anna Smith", "answer")]
    first_answer = t.turns[1]
    assert first_answer.text == (
        "I found a team under a lot of pressure, with waiting lists growing every month.\n"
        "We started by measuring how long each step of the referral took.\n"
        "Most of the delay was in booking, not in clinics."
    )
    assert "Anna Smith:" not in first_answer.text  # the tag is not part of the turn's text
    assert t.text[first_answer.tag_start :].startswith("Anna Smith:")

    ps = chunks(t, embedder)
    check(t, ps, embedder)
    assert [(p.kind, p.speaker, p.role, p.question_speaker, p.turns) for p in ps] == [
        ("answer", "Anna Smith", "interviewee", "Barry Hughes", (0, 1)),
        ("answer", "Anna Smith", "interviewee", "Barry Hughes", (2, 3)),
    ]
    assert ps[0].question.endswith("What did you find when you first arrived at the hospital?")
    assert ps[0].chunk_id == "plain.txt#t0-1"
    # adjacent question and answer: the range runs from the question's tag to the answer's end
    assert ps[0].start_char == 0
    assert t.text[ps[0].start_char : ps[0].end_char].endswith("not in clinics.")
    # the embedded text carries the question with the answer; the citable text is the answer
    assert ps[1].embed_question == "How did you fix the booking delay?"
    assert ps[1].embed_question in ps[1].embed_text and ps[1].text in ps[1].embed_text
    assert ps[1].embed_text.index(ps[1].embed_question) < ps[1].embed_text.index(ps[1].text)


def test_title_tags_are_canonicalised_with_an_alias(embedder):
    text = (
        "The Chair (Hon. Anthony Rota): Order. We will now proceed to questions. Go ahead, Mr. Scheer.\n\n"
        "Hon. Andrew Scheer (Leader of the Opposition): Why were the fraud warnings about the wage subsidy ignored?\n\n"
        "Right Hon. Justin Trudeau (Prime Minister): They were not ignored; every claim is verified after payment and money is recovered.\n\n"
        "The Chair: Thank you. Go ahead, Mr. Scheer.\n\n"
        "Hon. Andrew Scheer: How much money has been recovered so far?\n\n"
        "Right Hon. Justin Trudeau: Several hundred million dollars have been recovered, and the audits continue this year.\n"
    )
    t = parse_text(text, "hearing.txt")
    assert set(t.speakers) == {"The Chair", "Hon. Andrew Scheer", "Right Hon. Justin Trudeau"}
    chair = t.speakers["The Chair"]
    assert chair.name == "The Chair"
    assert "Hon. Anthony Rota" in chair.aliases
    assert t.speakers["Right Hon. Justin Trudeau"].description == "Prime Minister"
    assert [turn.speaker for turn in t.turns] == [
        "The Chair", "Hon. Andrew Scheer", "Right Hon. Justin Trudeau", "The Chair", "Hon. Andrew Scheer", "Right Hon. Justin Trudeau",
    ]
    assert t.turns[0].act == "procedural" and t.turns[3].act == "procedural"
    ps = chunks(t, embedder)
    check(t, ps, embedder)
    assert [(p.kind, p.speaker, p.question_speaker) for p in ps] == [
        ("answer", "Right Hon. Justin Trudeau", "Hon. Andrew Scheer"),
        ("answer", "Right Hon. Justin Trudeau", "Hon. Andrew Scheer"),
    ]
    # the chair's hand-over between them is procedural: not indexed on its own
    assert not any("Go ahead" in p.text for p in ps)


def test_initials_tags(embedder):
    text = (
        "PP: What made you take the job?\n"
        "AS: I wanted to apply improvement methods across the whole health system.\n"
        "PP: What worries you most?\n"
        "AS: That people see the framework as the work itself, rather than a support for it.\n"
    )
    t = parse_text(text, "initials.txt")
    assert set(t.speakers) == {"PP", "AS"}
    assert roles(t) == {"PP": "interviewer", "AS": "interviewee"}
    ps = chunks(t, embedder)
    check(t, ps, embedder)
    assert [(p.chunk_id, p.speaker, p.question_speaker) for p in ps] == [
        ("initials.txt#t0-1", "AS", "PP"),
        ("initials.txt#t2-3", "AS", "PP"),
    ]


def test_windows_line_endings_keep_exact_offsets(embedder):
    t = parse_text(PLAIN.replace("\n", "\r\n"), "crlf.txt")
    assert acts(t) == acts(parse_text(PLAIN, "lf.txt"))
    ps = chunks(t, embedder)
    check(t, ps, embedder)
    assert all("\r" not in p.text for p in ps)


def test_colon_in_prose_is_not_a_speaker_tag():
    text = (
        "Dana Reyes: What did the review find?\n"
        "Omar Haddad: Three things. Note: the first one surprised us.\n"
        "However, the key point: waiting times fell.\n"
        "Dana Reyes: Why did they fall?\n"
        "Omar Haddad: Because booking moved to the clinics.\n"
    )
    t = parse_text(text, "colons.txt")
    assert set(t.speakers) == {"Dana Reyes", "Omar Haddad"}
    assert "However, the key point: waiting times fell." in t.turns[1].text


# ----------------------------------------------------------------------------- front matter

FRONT = """---
title: "Building a garage company"
date: 2024-02-01
source: https://example.org/interviews/garage
speakers:
  JD:
    name: Jane Doe
    role: interviewer
    description: Host of the podcast
  RK:
    name: Raj Kumar
    role: interviewee
    description: Founder
---
JD: How did you start?
RK: In a garage, with two friends and a second-hand lathe.
JD: Thank you.
"""


def test_front_matter_title_date_source_speakers_and_roles(embedder):
    t = parse_text(FRONT, "garage.md")
    assert (t.title, t.date, t.source) == ("Building a garage company", "2024-02-01", "https://example.org/interviews/garage")
    assert t.warnings == []
    assert {k: (s.name, s.role, s.description) for k, s in t.speakers.items()} == {
        "JD": ("Jane Doe", "interviewer", "Host of the podcast"),
        "RK": ("Raj Kumar", "interviewee", "Founder"),
    }
    # the front matter is not a turn, and offsets still point into the whole file
    assert t.turns[0].text == "How did you start?"
    assert t.text[t.turns[0].start :].startswith("How did you start?")
    ps = chunks(t, embedder)
    check(t, ps, embedder)
    assert [(p.kind, p.speaker, p.role, p.question_speaker, p.title, p.date) for p in ps] == [
        ("answer", "Raj Kumar", "interviewee", "Jane Doe", "Building a garage company", "2024-02-01"),
    ]
    assert t.text[ps[0].start_char : ps[0].end_char].startswith("JD: How did you start?")


def test_front_matter_roles_override_inference_and_match_full_name_tags():
    # by its wording, Raj would be taken for the interviewer: the front matter says otherwise
    text = (
        "---\nspeakers:\n  JD: {name: Jane Doe, role: interviewee}\n  RK: {name: Raj Kumar, role: interviewer}\n---\n"
        "Raj Kumar: Can you tell us where it all began?\n"
        "Jane Doe (founder): It began in a garage, with two friends and a lathe.\n"
    )
    t = parse_text(text, "names.txt")
    assert roles(t) == {"RK": "interviewer", "JD": "interviewee"}
    assert acts(t) == [("RK", "question"), ("JD", "answer")]


@pytest.mark.parametrize(
    "front, warning",
    [
        ("---\ntitle: [unclosed\nspeakers: {\n---\n", "not valid YAML"),
        ("---\n- just\n- a list\n---\n", "not a mapping"),
        ("---\nspeakers: 42\n---\n", "speakers"),
        ("---\nspeakers:\n  JD: {name: Jane Doe, role: moderator}\n---\n", "unknown role"),
        ("---\ntitle: never closed\n", "never ends"),
    ],
)
def test_broken_front_matter_warns_and_still_ingests(front, warning, embedder):
    body = "JD: How did you start?\nRK: In a garage, with two friends and a second-hand lathe.\n"
    t = parse_text(front + body, "broken.txt")
    assert any(warning in w for w in t.warnings), t.warnings
    assert [turn.speaker for turn in t.turns][-2:] == ["JD", "RK"]
    ps = chunks(t, embedder)
    check(t, ps, embedder)
    assert ps[-1].kind == "answer" and ps[-1].text == "In a garage, with two friends and a second-hand lathe."


# ----------------------------------------------------------------------------- the seed interview


def test_seed_interview_raw_intro_six_answers_one_comment(embedder):
    data = SEED.read_bytes()
    t = parse_bytes(data, "seed.txt")
    source = data.decode("utf-8-sig")
    assert t.text == source
    assert roles(t) == {"PP": "interviewer", "AS": "interviewee"}
    assert t.turns[0].act == "introduction" and t.turns[0].speaker is None
    assert t.turns[0].text.startswith("In my conversation with Amar")
    answers = [turn.index for turn in t.turns if turn.act == "answer"]
    assert answers == [2, 4, 6, 8, 10, 12]
    assert all(t.turns[i - 1].act == "question" and t.turns[i - 1].speaker == "PP" for i in answers)
    comments = [turn for turn in t.turns if turn.act == "comment"]
    assert len(comments) == 1
    assert (comments[0].comment_author, comments[0].comment_date) == ("Thomas John Rose", "23 Feb 2024")

    ps = chunks(t, embedder)
    check(t, ps, embedder)
    kinds = [p.kind for p in ps]
    assert kinds[0] == "introduction" and kinds[-1] == "comment"
    assert {p.turns for p in ps if p.kind == "answer"} == {(i - 1, i) for i in answers}
    assert all(p.question_speaker == "PP" and p.speaker == "AS" for p in ps if p.kind == "answer")
    intro, comment = ps[0], ps[-1]
    assert intro.chunk_id == "seed.txt#t0" and intro.text.endswith("condensed for clarity.")
    assert (comment.speaker, comment.comment_date, comment.role) == ("Thomas John Rose", "23 Feb 2024", "other")
    assert comment.text.startswith("I don't think that NHS Impact is the first improvement framework")

    last_answer = [p for p in ps if p.kind == "answer"][-1]
    assert "Thomas John Rose" not in last_answer.text and "Comments" not in last_answer.text
    assert comment.text not in last_answer.text
    assert last_answer.end_char <= source.index("\nComments") < comment.start_char
    assert last_answer.text.endswith("if we could do it better.")
    assert not any(p.text.strip() == "Comments" or "23 Feb 2024" in p.text for p in ps)


def test_two_reader_comments_with_dates_in_other_forms():
    text = (
        "PP: What did you learn?\nAS: That improvement is learned by doing it, not by reading about it.\n"
        "Comments (2)\n"
        "Jane Roe 3 March 2024\nA great read.\nThanks for sharing.\n"
        "John Smith, 2024-03-05\nI disagree with the second point.\n"
    )
    t = parse_text(text, "comments.txt")
    comments = [(c.comment_author, c.comment_date, c.text) for c in t.turns if c.act == "comment"]
    assert comments == [
        ("Jane Roe", "3 March 2024", "A great read.\nThanks for sharing."),
        ("John Smith", "2024-03-05", "I disagree with the second point."),
    ]
    assert t.turns[1].text == "That improvement is learned by doing it, not by reading about it."


# ----------------------------------------------------------------------------- Markdown

MARKDOWN = """# The Garage Years

*Recorded in March.*

**Jane Doe:** How did you start the company?

**Raj Kumar:** In a garage, with two friends.

We had no money at all, so we built our own tools.

**Jane Doe**: What would you do differently?

**Raj Kumar**: Hire an accountant much earlier than we did.
"""


def test_markdown_bold_tags_and_title_heading(embedder):
    t = parse_text(MARKDOWN, "garage.md")
    assert t.format == "markdown"
    assert t.title == "The Garage Years"
    assert set(t.speakers) == {"Jane Doe", "Raj Kumar"}
    assert acts(t)[-4:] == [("Jane Doe", "question"), ("Raj Kumar", "answer"), ("Jane Doe", "question"), ("Raj Kumar", "answer")]
    answer = [turn for turn in t.turns if turn.act == "answer"][0]
    assert answer.text == "In a garage, with two friends.\nWe had no money at all, so we built our own tools."
    assert "**" not in answer.text
    ps = chunks(t, embedder)
    check(t, ps, embedder)
    assert [p.speaker for p in ps if p.kind == "answer"] == ["Raj Kumar", "Raj Kumar"]
    assert not any("The Garage Years" in p.text for p in ps)


# ----------------------------------------------------------------------------- WebVTT / SubRip

VTT_VOICES = """WEBVTT - an interview

NOTE recorded on site

00:00:01.000 --> 00:00:04.000
<v Jane Doe>How did you start
<v Jane Doe>the company?

00:00:04.500 --> 00:00:08.000
<v Raj Kumar>I started in a garage
with two friends.

00:00:08.500 --> 00:00:12.250
<v Raj Kumar>We had <i>no</i> money at all.

00:00:12.500 --> 00:00:14.000
<v Jane Doe>Why a garage?

00:00:14.500 --> 00:00:18.000
<v.loud Raj Kumar>Because the rent was cheap and the landlord was patient.</v>
"""

VTT_PREFIXES = """WEBVTT

1
00:00:01.000 --> 00:00:04.000
Jane Doe: How did you start the company?

2
00:00:04.500 --> 00:00:08.000
Raj Kumar: I started in a garage

3
00:01:08.500 --> 00:01:12.000
with two friends and no money.
"""


def test_vtt_voice_tags_cues_merged_into_turns_with_times(embedder):
    t = parse_text(VTT_VOICES, "talk.vtt")
    assert t.format == "vtt"
    assert [(turn.speaker, turn.act, turn.start_time, turn.end_time) for turn in t.turns] == [
        ("Jane Doe", "question", 1.0, 4.0),
        ("Raj Kumar", "answer", 4.5, 12.25),
        ("Jane Doe", "question", 12.5, 14.0),
        ("Raj Kumar", "answer", 14.5, 18.0),
    ]
    assert t.turns[0].text == "How did you start the company?"
    assert t.turns[1].text == "I started in a garage with two friends. We had no money at all."
    assert "<" not in "".join(turn.text for turn in t.turns)
    ps = chunks(t, embedder)
    check(t, ps, embedder)
    assert [(p.speaker, p.question_speaker, p.start_time, p.end_time) for p in ps] == [
        ("Raj Kumar", "Jane Doe", 4.5, 12.25),
        ("Raj Kumar", "Jane Doe", 14.5, 18.0),
    ]


def test_vtt_speaker_prefixes(embedder):
    t = parse_text(VTT_PREFIXES, "prefixes.vtt")
    assert [(turn.speaker, turn.act, turn.start_time, turn.end_time) for turn in t.turns] == [
        ("Jane Doe", "question", 1.0, 4.0),
        ("Raj Kumar", "answer", 4.5, 72.0),
    ]
    assert t.turns[1].text == "I started in a garage with two friends and no money."
    check(t, chunks(t, embedder), embedder)


SRT = """1
00:00:01,000 --> 00:00:04,000
Jane Doe: How did you start the company?

2
00:00:04,500 --> 00:00:08,000
Raj Kumar: I started in a garage

3
00:00:08,500 --> 00:00:12,000
with two friends and no money.

4
01:00:12,500 --> 01:00:14,000
Jane Doe: Why a garage?

5
01:00:14,500 --> 01:00:18,000
Raj Kumar: Because the rent was cheap.
"""


@pytest.mark.parametrize("with_index", [True, False])
def test_srt_with_and_without_index_lines(with_index, embedder):
    text = SRT if with_index else re.sub(r"(?m)^\d+\n(?=\d\d:)", "", SRT)
    assert ("\n2\n" in text) == with_index
    t = parse_text(text, "talk.srt")
    assert t.format == "srt"
    assert [(turn.speaker, turn.act, turn.start_time, turn.end_time) for turn in t.turns] == [
        ("Jane Doe", "question", 1.0, 4.0),
        ("Raj Kumar", "answer", 4.5, 12.0),
        ("Jane Doe", "question", 3612.5, 3614.0),
        ("Raj Kumar", "answer", 3614.5, 3618.0),
    ]
    ps = chunks(t, embedder)
    check(t, ps, embedder)
    assert ps[0].text == "I started in a garage with two friends and no money."


def test_cues_without_speakers_are_statements_with_a_warning(embedder):
    text = "WEBVTT\n\n00:00:01.000 --> 00:00:04.000\nThe valley was settled by farmers.\n\n00:00:05.000 --> 00:00:09.000\nThe railway came later.\n"
    t = parse_text(text, "noisy.vtt")
    assert any("no speakers" in w for w in t.warnings)
    ps = chunks(t, embedder)
    check(t, ps, embedder)
    assert {p.kind for p in ps} == {"statement"}


# ----------------------------------------------------------------------------- JSON


def _check_json_escapes(t: Transcript) -> None:
    """Decoded escapes map to their whole escape sequence in the source."""
    for turn in t.turns:
        for s in turn.segments:
            if not s.verbatim:
                assert json.loads('"' + t.text[s.start : s.end] + '"') == s.text, s


def test_json_list_of_turns_with_escapes(embedder):
    turns = [
        {"speaker": "Jane Doe", "text": "How did you start?\nTell me \"all\" about it.", "start": 1.5, "end": "00:00:04"},
        {"speaker": "Raj Kumar", "text": "Caf\u00e9 first, then a garage.\n\nWe grew \"fast\".", "start": 5, "end": 9},
        {"speaker": "Jane Doe", "text": "Why a caf\u00e9?", "start": "00:01:00.5"},
        {"speaker": "Raj Kumar", "text": "The rent was cheap, and the coffee was good."},
    ]
    text = json.dumps(turns, indent=1)  # ensure_ascii: é is written as \u00e9
    assert "\\u00e9" in text and '\\"' in text and "\\n" in text
    t = parse_text(text, "talk.json")
    assert t.format == "json"
    assert [(turn.speaker, turn.act, turn.start_time, turn.end_time) for turn in t.turns] == [
        ("Jane Doe", "question", 1.5, 4.0),
        ("Raj Kumar", "answer", 5.0, 9.0),
        ("Jane Doe", "question", 60.5, None),
        ("Raj Kumar", "answer", None, None),
    ]
    assert t.turns[0].text == 'How did you start?\nTell me "all" about it.'
    assert t.turns[1].text == 'Café first, then a garage.\nWe grew "fast".'
    _check_json_escapes(t)
    ps = chunks(t, embedder)
    check(t, ps, embedder)
    assert ps[0].text == 'Café first, then a garage.\nWe grew "fast".'
    assert ps[0].question == 'How did you start?\nTell me "all" about it.'
    for p in ps:  # the source range holds the answer's JSON string
        assert json.dumps(p.text.split("\n")[0], ensure_ascii=True)[1:-1] in t.text[p.start_char : p.end_char]


def test_json_object_with_metadata_and_turns(embedder):
    doc = {
        "metadata": {
            "title": "JSON talk",
            "date": "2024-01-01",
            "source": "https://example.org/json",
            "speakers": {"JD": {"name": "Jane Doe", "role": "interviewer"}, "RK": {"name": "Raj Kumar", "role": "interviewee"}},
        },
        "turns": [
            {"speaker": "JD", "text": "  Why did you leave the bank?  "},
            {"speaker": "RK", "text": "Because \t it stopped being fun\u0021 Cr\u00e8me br\u00fbl\u00e9e \U0001F600 helped."},
        ],
    }
    text = json.dumps(doc, ensure_ascii=True)
    t = parse_text(text, "meta.json")
    assert (t.title, t.date, t.source) == ("JSON talk", "2024-01-01", "https://example.org/json")
    assert {k: (s.name, s.role) for k, s in t.speakers.items()} == {"JD": ("Jane Doe", "interviewer"), "RK": ("Raj Kumar", "interviewee")}
    assert t.turns[0].text == "Why did you leave the bank?"
    assert t.turns[1].text == "Because \t it stopped being fun! Crème brûlée \U0001F600 helped."
    _check_json_escapes(t)
    ps = chunks(t, embedder)
    check(t, ps, embedder)
    assert [(p.speaker, p.question_speaker, p.question) for p in ps] == [("Raj Kumar", "Jane Doe", "Why did you leave the bank?")]


@pytest.mark.parametrize(
    "text, reason",
    [
        ('{"turns":', "invalid JSON"),
        ('{"talk": []}', '"turns" list'),
        ("[1, 2]", "must be an object"),
        ('"just a string"', "list of turns"),
        ("[]", "no turns"),
        ('[{"speaker": "A", "text": 5}]', '"text" must be a string'),
        ('[{"speaker": 7, "text": "hi"}]', '"speaker" must be a string'),
        ('[{"speaker": "A", "text": "hi", "start": "soon"}]', '"start" must be'),
        ('[{"speaker": "A", "text": "   "}]', "empty"),
        ('{"metadata": 3, "turns": [{"speaker": "A", "text": "hi"}]}', '"metadata" must be an object'),
    ],
)
def test_json_of_the_wrong_shape_is_refused_with_the_reason(text, reason):
    with pytest.raises(TranscriptError) as err:
        parse_bytes(text.encode(), "bad.json")
    assert str(err.value).startswith("bad.json: ") and reason in str(err.value)


# ----------------------------------------------------------------------------- untagged prose

PROSE = """The history of the valley goes back centuries. Farmers settled here first.

Later, the railway came and the town grew quickly.
It doubled in ten years.

Today it is a quiet place.
"""


def test_untagged_prose_becomes_statements_with_a_warning(embedder):
    t = parse_text(PROSE, "valley.txt")
    assert any("no speaker tags" in w for w in t.warnings)
    assert t.speakers == {}
    ps = chunks(t, embedder)
    check(t, ps, embedder)
    assert [(p.kind, p.chunk_id, p.text) for p in ps] == [
        ("statement", "valley.txt#t0", "The history of the valley goes back centuries. Farmers settled here first."),
        ("statement", "valley.txt#t1", "Later, the railway came and the town grew quickly.\nIt doubled in ten years."),
        ("statement", "valley.txt#t2", "Today it is a quiet place."),
    ]


# ----------------------------------------------------------------------------- multi-party hearing

HEARING = """The Chair (Ms. Ruth Owen): I call this meeting to order. We have two witnesses today. Ms. Lee, go ahead.

Ms. Karen Lee: Thank you, Chair. Minister, how many nurses were hired in rural hospitals last year?

Hon. Paul Grant: We hired about four hundred nurses in rural hospitals, mostly in the north, and we are training two hundred more this year.

Ms. Karen Lee: Why are there still vacancies in the emergency departments?

Hon. Paul Grant: Vacancies remain because many experienced nurses retired during the pandemic, and recruitment takes time.

The Chair: Thank you. Dr. Singh, did you want to add something?

Dr. Maya Singh: Yes. Retirements explain most of it, but pay in the private sector also pulls nurses away from emergency work.

The Chair: Thank you. Go ahead, Mr. Brown.

Mr. Tom Brown: Thank you, Chair. Dr. Singh, what is the waiting time for surgery now?

Dr. Maya Singh: Do you mean elective surgery or all surgery?

Mr. Tom Brown: Elective surgery, please.

Dr. Maya Singh: The median wait for elective surgery is now eleven weeks, down from fifteen weeks a year ago.

Mr. Tom Brown: What explains the improvement?

Dr. Maya Singh: Two new operating theatres opened, and day surgery moved to a separate site.

The Chair: Thank you.

Mr. Tom Brown: Thank you.

The Chair: The meeting is adjourned.
"""


def test_multi_party_hearing_roles_decided_per_turn(embedder):
    t = parse_text(HEARING, "hearing.txt")
    r = roles(t)
    assert {k: r[k] for k in ("Ms. Karen Lee", "Mr. Tom Brown")} == {"Ms. Karen Lee": "interviewer", "Mr. Tom Brown": "interviewer"}
    assert {k: r[k] for k in ("Hon. Paul Grant", "Dr. Maya Singh")} == {"Hon. Paul Grant": "interviewee", "Dr. Maya Singh": "interviewee"}
    assert r["The Chair"] in ("interviewer", "other")  # chairs hand over, and sometimes ask
    assert t.speakers["The Chair"].aliases == ["Ms. Ruth Owen"]
    assert acts(t) == [
        ("The Chair", "procedural"),
        ("Ms. Karen Lee", "question"),
        ("Hon. Paul Grant", "answer"),
        ("Ms. Karen Lee", "question"),
        ("Hon. Paul Grant", "answer"),
        ("The Chair", "question"),
        ("Dr. Maya Singh", "answer"),
        ("The Chair", "procedural"),
        ("Mr. Tom Brown", "question"),
        # a witness asking back is a question (per turn, whatever her role) ...
        ("Dr. Maya Singh", "question"),
        ("Mr. Tom Brown", "procedural"),
        # ... and what she then says answers the member's question
        ("Dr. Maya Singh", "answer"),
        ("Mr. Tom Brown", "question"),
        ("Dr. Maya Singh", "answer"),
        ("The Chair", "procedural"),
        ("Mr. Tom Brown", "procedural"),
        ("The Chair", "procedural"),
    ]
    ps = chunks(t, embedder)
    check(t, ps, embedder)
    assert [(p.turns, p.speaker, p.role, p.question_speaker) for p in ps] == [
        ((1, 2), "Hon. Paul Grant", "interviewee", "Ms. Karen Lee"),
        ((3, 4), "Hon. Paul Grant", "interviewee", "Ms. Karen Lee"),
        ((5, 6), "Dr. Maya Singh", "interviewee", "The Chair"),
        ((8, 11), "Dr. Maya Singh", "interviewee", "Mr. Tom Brown"),
        ((12, 13), "Dr. Maya Singh", "interviewee", "Mr. Tom Brown"),
    ]
    assert all(p.kind == "answer" and p.question_speaker != p.speaker for p in ps)
    assert ps[3].question.endswith("what is the waiting time for surgery now?")
    # not adjacent to its question (the exchange in between is not procedural): own range
    assert ps[3].start_char == t.turns[11].tag_start
    # adjacent: from the question's tag to the answer's end
    assert ps[4].start_char == t.turns[12].tag_start and ps[4].end_char == t.turns[13].end


def test_two_witnesses_answer_one_question_handed_over_by_the_chair(embedder):
    text = (
        "The Chair: Welcome. Ms. Lee, the floor is yours.\n\n"
        "Ms. Karen Lee: How will the new funding reach rural clinics, and when?\n\n"
        "Hon. Paul Grant: The funding goes to health boards in April, with a share reserved for rural clinics.\n\n"
        "The Chair: Thank you. Dr. Singh.\n\n"
        "Dr. Maya Singh: The boards will publish their allocations by June, so clinics can plan recruitment.\n\n"
        "The Chair: Thank you. Mr. Brown, go ahead.\n\n"
        "Mr. Tom Brown: What about the capital budget for new buildings?\n\n"
        "Hon. Paul Grant: Capital spending is set separately, over five years, and rural sites come first.\n"
    )
    t = parse_text(text, "panel.txt")
    ps = chunks(t, embedder)
    check(t, ps, embedder)
    assert [(p.speaker, p.question_speaker, p.turns) for p in ps] == [
        ("Hon. Paul Grant", "Ms. Karen Lee", (1, 2)),
        ("Dr. Maya Singh", "Ms. Karen Lee", (1, 4)),
        ("Hon. Paul Grant", "Mr. Tom Brown", (6, 7)),
    ]
    # not adjacent to its question: the second answer's range starts at its own turn
    assert ps[1].start_char == t.turns[4].tag_start


def test_member_statements_are_not_answers(embedder):
    # a chair calling members one after another for statements: nobody is asked anything
    text = (
        "The Chair: We now proceed to statements by members. Mr. Ames, you have the floor.\n\n"
        "Mr. Bo Ames: Mr. Chair, the volunteers of the river clean-up removed four tonnes of waste this spring.\n\n"
        "The Chair: We'll now go to Ms. Cole.\n\n"
        "Ms. Di Cole: Mr. Chair, our library celebrated one hundred years of service to the town this week.\n\n"
        "The Chair: We'll now go to Mr. Dunn.\n\n"
        "Mr. Ed Dunn: Mr. Chair, farmers in the valley need faster internet to sell their produce online.\n\n"
        "The Chair: Thank you. We now move to questions. Ms. Fox, go ahead.\n\n"
        "Ms. Flo Fox: Minister, when will rural broadband reach the valley?\n\n"
        "Hon. Gil Hart: The contract was signed last month, and the valley is connected by next spring.\n\n"
        "Ms. Flo Fox: How many homes will be connected?\n\n"
        "Hon. Gil Hart: About twelve thousand homes, and every school in the valley.\n"
    )
    t = parse_text(text, "statements.txt")
    for member in ("Mr. Bo Ames", "Ms. Di Cole", "Mr. Ed Dunn"):
        assert t.speakers[member].role != "interviewee", member
    ps = chunks(t, embedder)
    check(t, ps, embedder)
    answers = [p for p in ps if p.kind == "answer"]
    assert [(p.speaker, p.question_speaker) for p in answers] == [("Hon. Gil Hart", "Ms. Flo Fox")] * 2
    assert sum(p.kind == "statement" for p in ps) == 3


def test_procedural_turns_are_not_indexed(embedder):
    text = (
        "Dana Reyes: Thank you for coming.\n"
        "Omar Haddad: Thank you.\n"
        "Dana Reyes: What changed after the merger?\n"
        "Omar Haddad: Two teams became one, and the waiting list halved within a year.\n"
        "Dana Reyes: Go ahead, Mr. Haddad, if you want to add anything.\n"
        "Omar Haddad: Thank you very much.\n"
        "Dana Reyes: And why did the list halve?\n"
        "Omar Haddad: It was cheap.\n"
        "Dana Reyes: Thank you.\n"
    )
    t = parse_text(text, "courtesy.txt")
    assert [turn.act for turn in t.turns] == [
        "procedural", "procedural", "question", "answer", "procedural", "procedural", "question", "answer", "procedural",
    ]
    ps = chunks(t, embedder)
    check(t, ps, embedder)
    assert [p.text for p in ps] == ["Two teams became one, and the waiting list halved within a year.", "It was cheap."]


# ----------------------------------------------------------------------------- window limits


def _sentences(rng: random.Random, n: int) -> str:
    vocab = (
        "health care system improvement learning people organisation clinician quality data patients staff "
        "community national regional hospital services outcomes evidence practice leadership budget"
    ).split()
    return " ".join(" ".join(rng.choice(vocab) for _ in range(rng.randint(8, 25))).capitalize() + "." for _ in range(n))


def test_long_answer_with_a_giant_sentence_is_split_within_the_window(embedder):
    rng = random.Random(7)
    vocab = "health care system improvement learning people organisation quality data patients".split()
    giant = " ".join(rng.choice(vocab) for _ in range(600))  # 600 words, no punctuation at all
    paragraphs = [_sentences(rng, 9) for _ in range(9)]
    paragraphs.insert(4, giant)
    answer = "\n\n".join(paragraphs)
    assert 1900 <= len(answer.split()) <= 2300
    question = _sentences(rng, 8) + " So what would you change first?"
    text = f"Dana Reyes: {question}\n\nOmar Haddad: {answer}\n\nDana Reyes: Thank you.\n"
    t = parse_text(text, "long.txt")
    assert acts(t) == [("Dana Reyes", "question"), ("Omar Haddad", "answer"), ("Dana Reyes", "procedural")]
    ps = chunks(t, embedder)
    check(t, ps, embedder)  # includes: every embedded text fits, question included
    assert len(ps) >= 10
    assert [p.chunk_id for p in ps] == [f"long.txt#t0-1/p{i}" for i in range(1, len(ps) + 1)]
    # nothing is lost: the parts, in order, are the whole answer
    assert " ".join(p.text for p in ps).split() == answer.split()
    # every part keeps the (trimmed) question, and it ends where the question ends
    assert len(question.split()) > QUESTION_TOKEN_CAP
    for p in ps:
        assert p.question == question
        assert p.embed_question and question.endswith(p.embed_question)
        assert embedder.count_tokens([p.embed_question])[0] <= QUESTION_TOKEN_CAP
    assert ps[0].start_char == 0 and ps[-1].end_char == t.turns[1].end


def test_split_answer_leaves_no_scrap_as_its_last_part(embedder):
    rng = random.Random(11)
    answer = _sentences(rng, 14)
    while embedder.count_tokens([answer])[0] < 270:
        answer += " " + _sentences(rng, 1)
    answer += " Thank you."
    t = parse_text(f"Dana Reyes: What happened next?\n\nOmar Haddad: {answer}\n", "tail.txt")
    ps = chunks(t, embedder)
    check(t, ps, embedder)
    assert len(ps) == 2
    assert ps[-1].text.endswith("Thank you.") and ps[-1].text != "Thank you."
    assert embedder.count_tokens([ps[-1].text])[0] >= TAIL_MIN_TOKENS
    assert " ".join(p.text for p in ps) == answer


def test_pathological_words_and_questions_still_fit_the_window(embedder):
    # long runs of consonants tokenize into many word pieces each: counting words is not enough
    rng = random.Random(3)

    def junk(n: int = 12) -> str:
        return "".join(rng.choice("qzxjkvwy") for _ in range(n))

    question = " ".join(junk() for _ in range(120)) + "?"
    answer = " ".join(junk() for _ in range(300)) + ". " + junk(90) + " " + junk(400) + "."
    text = f"Dana Reyes: {question}\n\nOmar Haddad: {answer}\n"
    t = parse_text(text, "junk.txt")
    ps = chunks(t, embedder)
    check(t, ps, embedder)
    assert "".join(p.text for p in ps).replace(" ", "") == answer.replace(" ", "")
    assert all(embedder.count_tokens([p.embed_question])[0] <= QUESTION_TOKEN_CAP for p in ps)


def test_seed_answers_split_into_parts_that_fit(embedder):
    t = parse_bytes(SEED.read_bytes(), "seed.txt")
    ps = chunks(t, embedder)
    check(t, ps, embedder)
    parts = [p for p in ps if p.part]
    assert parts, "the seed's long answers must be split"
    for p in parts:  # every part is embedded with the question
        assert p.embed_question and p.embed_question in p.embed_text and p.text in p.embed_text


# ----------------------------------------------------------------------------- decoding


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"  \n\t\r\n  ", "only whitespace"),
        (b"PK\x03\x04\x00\x00binary\x00\x00data", "NUL bytes"),
        (b"caf\x81\x8d\x90 \xc3(", "undecodable"),
        (bytes(range(1, 9)) * 200, "binary or corrupt"),
    ],
)
def test_undecodable_inputs_are_refused_with_the_reason(data, reason):
    with pytest.raises(TranscriptError) as err:
        parse_bytes(data, "bad.txt")
    assert str(err.value).startswith("bad.txt: ") and reason in str(err.value)


@pytest.mark.parametrize(
    "name, text, reason",
    [
        ("bad.vtt", "WEBVTT\n\njust some text\nwithout any cue\n", "no valid WebVTT cues"),
        ("bad.vtt", "WEBVTT\n\n00:00:01.000 --> later\nhello\n", "no valid WebVTT cues"),
        ("bad.srt", "1\n00:00:01,000 -> 00:00:02,000\nhello\n", "no valid SubRip cues"),
        ("bad.srt", "1\nnot a time --> at all\nhello\n", "no valid SubRip cues"),
    ],
)
def test_malformed_subtitles_are_refused(name, text, reason):
    with pytest.raises(TranscriptError) as err:
        parse_bytes(text.encode(), name)
    assert reason in str(err.value)


def test_windows_1252_text_is_decoded_with_a_warning(embedder):
    data = "PP: Was it a caf\u00e9?\nAS: Yes \u2013 a small caf\u00e9 by the station, open every day.\n".encode("cp1252")
    t = parse_bytes(data, "cp.txt")
    assert any("cp1252" in w for w in t.warnings)
    assert t.turns[1].text == "Yes \u2013 a small caf\u00e9 by the station, open every day."
    check(t, chunks(t, embedder), embedder)


def test_utf16_with_bom_is_decoded(embedder):
    data = "PP: Was it hard?\nAS: Harder than anything I had done before, for a year.\n".encode("utf-16")
    t = parse_bytes(data, "u16.txt")
    assert acts(t) == [("PP", "question"), ("AS", "answer")]
    check(t, chunks(t, embedder), embedder)
