"""Speaker identity across labels (rag._identity): a tag linked to the full name the transcript
gives in its title, introduction or turns. Transcripts are written here; one test reads the
real seed interview."""

from __future__ import annotations

import pytest

from conftest import SEED
from rag import parse_text
from rag._identity import candidates, link_speakers, name_runs
from rag._records import Speaker, Transcript, Turn, Segment


def speakers(t: Transcript) -> dict[str, tuple[str, list[str]]]:
    return {k: (s.name, s.names) for k, s in t.speakers.items()}


def test_initials_linked_from_the_introduction():
    text = (
        "Today I spoke with Maria Lopez, who runs the harbour trust, about the new ferry.\n"
        "ML and I met at the quay.\n"
        "TB: Why did the trust buy a second ferry?\n"
        "ML: Because the winter crossings were full every week.\n"
        "TB: What comes next?\n"
        "ML: A covered waiting room, and then a timetable that Maria can defend.\n"
    )
    t = parse_text(text, "ferry.txt")
    assert t.turns[0].act == "introduction"
    sp = t.speakers["ML"]
    assert (sp.tag, sp.name) == ("ML", "Maria Lopez")
    assert sp.names == ["Maria Lopez", "Maria", "ML"]  # "Maria" is written alone in a turn
    assert t.speakers["TB"].name == "TB" and t.speakers["TB"].names == []  # nobody with initials TB


def test_passages_carry_the_linked_name(embedder):
    from rag._chunk import chunk_transcript

    text = (
        "In this interview Maria Lopez talks about the harbour.\n"
        "TB: Why did the trust buy a second ferry?\n"
        "ML: Because the winter crossings were full every week.\n"
    )
    t = parse_text(text, "ferry.txt")
    ps = chunk_transcript(t, embedder.count_tokens, embedder.max_tokens)
    answers = [p for p in ps if p.kind == "answer"]
    assert answers and all(p.speaker == "Maria Lopez" and p.question_speaker == "TB" for p in answers)
    assert "Maria Lopez: Because" in answers[0].embed_text


def test_name_only_in_the_title():
    text = (
        "# A conversation with Oskar Brandt\n"
        "\n"
        "Q: How did the choir start?\n"
        "\n"
        "OB: Six of us sang in a kitchen, and then the neighbours joined.\n"
        "\n"
        "Q: And now?\n"
        "\n"
        "OB: Now we rent the school hall on Thursdays.\n"
    )
    t = parse_text(text, "choir.md")
    assert t.title == "A conversation with Oskar Brandt"
    assert speakers(t)["OB"] == ("Oskar Brandt", ["Oskar Brandt", "OB"])
    assert t.speakers["Q"].name == "Q"  # one letter is no initials


def test_front_matter_name_wins():
    text = (
        "---\n"
        "title: A conversation with Oskar Brandt\n"
        "speakers:\n"
        "  OB:\n"
        "    name: Olga Berg\n"
        "    role: interviewee\n"
        "  KW: Karl Weiss\n"
        "---\n"
        "KW: How did the choir start?\n"
        "OB: Six of us sang in a kitchen.\n"
    )
    t = parse_text(text, "choir.txt")
    assert speakers(t) == {"OB": ("Olga Berg", []), "KW": ("Karl Weiss", [])}


def test_front_matter_that_repeats_the_tag_is_no_name():
    text = (
        "---\n"
        "title: A conversation with Oskar Brandt\n"
        "speakers:\n"
        "  OB: {name: OB, role: interviewee, description: founder of the choir}\n"
        "---\n"
        "KW: How did the choir start?\n"
        "OB: Six of us sang in a kitchen.\n"
    )
    t = parse_text(text, "choir.txt")
    sp = t.speakers["OB"]
    assert (sp.name, sp.role, sp.description) == ("Oskar Brandt", "interviewee", "founder of the choir")


def test_two_names_with_the_same_initials_are_left_alone():
    text = (
        "Tonight Anna Stein and Adam Stone discuss the library closures.\n"
        "HR: Why close the branch libraries?\n"
        "AS: The council says it saves money.\n"
        "HR: Does it?\n"
        "AS: Not once you count the buses.\n"
    )
    t = parse_text(text, "library.txt")
    assert speakers(t)["AS"] == ("AS", [])


def test_a_name_in_the_introduction_outweighs_one_in_the_turns():
    text = (
        "This week we talk to Anna Stein about markets.\n"
        "HR: Who shaped your thinking?\n"
        "AS: Adam Smith, like everyone, and my first landlord.\n"
    )
    t = parse_text(text, "markets.txt")
    assert t.speakers["AS"].name == "Anna Stein"


def test_a_name_in_the_turns_when_nothing_frames_the_interview():
    text = (
        "HR: Welcome to the programme, Anna Stein. Why markets?\n"
        "AS: Because I grew up above one.\n"
        "HR: Thank you.\n"
        "AS: Thank you for having me.\n"
    )
    t = parse_text(text, "markets.txt")
    assert t.speakers["AS"].name == "Anna Stein"
    assert t.speakers["HR"].name == "HR"


def test_first_name_tag_linked_to_the_full_name():
    text = (
        "Our guest today is the glassblower Ines Duarte.\n"
        "Host: How long does one vase take?\n"
        "Ines: About a day, if nothing cracks.\n"
        "Host: And if it cracks?\n"
        "Ines: Then two days.\n"
    )
    t = parse_text(text, "glass.txt")
    assert speakers(t)["Ines"] == ("Ines Duarte", ["Ines Duarte", "Ines"])
    assert t.speakers["Host"].name == "Host"


def test_surname_tag_linked_to_the_full_name():
    text = (
        "Yesterday Ines Duarte showed us her workshop; Dr. Tomas Ferreira, her doctor, came along.\n"
        "Host: How long does one vase take?\n"
        "Duarte: About a day, if nothing cracks.\n"
        "Ferreira: Her lungs are fine, I checked.\n"
    )
    t = parse_text(text, "glass.txt")
    assert t.speakers["Duarte"].name == "Ines Duarte"
    assert t.speakers["Ferreira"].name == "Tomas Ferreira"


def test_first_name_with_two_surnames_is_ambiguous():
    text = (
        "Ines Duarte and Ines Moreno run the studio together.\n"
        "Host: Who started it?\n"
        "Ines: We both did.\n"
    )
    t = parse_text(text, "glass.txt")
    assert t.speakers["Ines"].name == "Ines"


def test_a_name_another_speaker_has_is_not_taken():
    text = (
        "Today: Ines Duarte in conversation.\n"
        "Ines Duarte: Welcome.\n"
        "ID: Thank you.\n"
    )
    t = parse_text(text, "glass.txt")
    assert t.speakers["ID"].name == "ID"


def test_name_runs_and_candidates_on_plain_strings():
    runs = name_runs("Yesterday Jane van Dam met Dr. Raj Kumar. Kumar's team came too.")
    assert [[w.text for w in r] for r in runs] == [["Yesterday", "Jane", "van", "Dam"], ["Raj", "Kumar"], ["Kumar"]]
    assert runs[0][0].initial and not runs[1][0].initial
    assert candidates("JVD", runs[0], set()) == [("Jane", "van", "Dam")]
    assert candidates("JD", runs[0], set()) == [("Jane", "van", "Dam")]  # particle not counted
    assert candidates("Dam", runs[0], set()) == [("Jane", "van", "Dam")]  # not "Yesterday"
    assert candidates("RK", runs[1], set()) == [("Raj", "Kumar")]
    assert candidates("KR", runs[1], set()) == []


def test_link_speakers_on_a_built_transcript():
    text = "A talk with Jane Doe Smith.\nJDS: Hello."
    t = Transcript(
        id="x", text=text, format="text", title="x",
        speakers={"JDS": Speaker(tag="JDS", name="JDS", role="interviewee")},
        turns=[Turn(0, None, [Segment(text[:27], 0)], 0, act="introduction"),
               Turn(1, "JDS", [Segment("Hello.", 33)], 28, act="statement")],
    )
    assert link_speakers(t) == {"JDS": "Jane Doe Smith"}
    assert t.speakers["JDS"].names == ["Jane Doe Smith", "JDS"]


def test_real_seed_initials_linked_from_file_name_and_introduction():
    if not SEED.exists():
        pytest.skip(f"the seed interview is not here ({SEED})")
    t = parse_text(SEED.read_text(encoding="utf-8-sig"), SEED.name)
    # the raw file names him only as "Amar" (introduction) and "amar shah" (its file name)
    assert "Amar Shah" not in t.text and "with Amar about" in t.text
    sp = t.speakers["AS"]
    assert (sp.tag, sp.name, sp.role) == ("AS", "Amar Shah", "interviewee")
    assert sp.names == ["Amar Shah", "Amar", "AS"]
    # the interviewer is named nowhere in the text: left as tagged
    assert (t.speakers["PP"].name, t.speakers["PP"].names) == ("PP", [])


def test_a_name_that_is_another_speakers_alias_is_not_taken():
    text = (
        "The Chair (Hon. Anthony Rota): Order. We begin with the minister.\n"
        "AR: Thank you, Mr. Chair.\n"
        "The Chair: Please go ahead.\n"
    )
    t = parse_text(text, "hearing.txt")
    assert t.speakers["The Chair"].aliases == ["Hon. Anthony Rota"]
    assert t.speakers["AR"].name == "AR"


def test_manifest_keeps_names_and_old_manifests_still_load():
    import json

    from rag._store import _info, _manifest_meta

    text = "In this interview Maria Lopez talks about the harbour.\nTB: Why?\nML: Because.\n"
    t = parse_text(text, "ferry.txt")
    md = _manifest_meta(t, [], "0" * 64)
    [tb, ml] = _info("ferry.txt", md).speakers
    assert (ml.tag, ml.name, ml.names) == ("ML", "Maria Lopez", ["Maria Lopez", "ML"])
    old = {"speakers": json.dumps([{"tag": "AS", "name": "AS", "role": "interviewee", "aliases": [], "turns": 3}])}
    [sp] = _info("old.txt", old).speakers  # written before Speaker.names existed
    assert (sp.name, sp.names, sp.turns) == ("AS", [], 3)
