"""Decide who asks and who answers, per turn, without any names fitted to particular data.

Speaker roles (interviewer / interviewee / other) come from front matter when given, else from
how each speaker talks: the share of their substantive turns that ask something, and how long
their turns are. Whether a turn is a question, an answer, procedural or a statement is then
decided per turn, so a hearing with a chair, several members and several witnesses works.
"""

from __future__ import annotations

import re
from statistics import median

from ._records import Speaker, Turn

# Courtesy and chairing phrases (generic English meeting language).
_PROCEDURAL = re.compile(
    r"\b(thank(s| you)( very much| so much)?|merci|welcome|good (morning|afternoon|evening)|"
    r"go ahead|please (proceed|continue|go ahead)|carry on|over to you|(you have|has) the floor|"
    r"the floor is (yours|now)|(is|are) next|next (question|speaker)|i (now )?call( on| upon)?|"
    r"(i'll|i will|we'll|we will|let's|let me) (now )?(go|turn|move|come|bring|hand) (it |over )?(to|in|back)|"
    r"(your|the) time is (up|over)|(you have|there are|there's) (\w+ )?(seconds|minutes?) (left|remaining)|"
    r"order,? please|the meeting is (adjourned|suspended)|we will (now )?(suspend|resume|adjourn)|"
    r"okay|ok|all right|alright|right|sure|yes|no|great|excellent|fine|very good|indeed|chair|chairman|madam|sir|"
    r"(can|could) you hear me|you're (on )?mute[d]?|point of order|(we'll|we will|i'll|i will|let's) (now )?(continue|begin|start|go|move on|wait)( with| to)?|"
    r"(the )?next (petition|question|questions|speaker|round)( will be| is| are)?( presented)?( by| from)?|"
    r"(the floor|it is) (now )?(goes|going|over) to|you (now )?have the floor|(please )?keep it (brief|short)|"
    r"(please )?(provide|give) a (short|brief) (response|answer)|(you have|there is) (time|about|just) ?(for )?(one|a) (more )?(short|brief|final)? ?(question|minute|response)s?|"
    r"(honourable|honorable|hon\.) (member|minister)|the member for|five-minute|one-minute|round)\b",
    re.I,
)
_ASK = re.compile(
    r"^(could|can|would|will|do|does|did|is|are|was|were|have|has|what|why|how|when|where|which|who)\b|"
    r"\b(i('d| would) like to ask|my (first |next |last |final )?question|i want to ask|can i ask|may i ask|"
    r"i wonder(ed)? (if|whether)|tell (me|us)|explain|describe|could you|can you|would you)\b",
    re.I,
)


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9’'\-]+", text)


def is_procedural(text: str, next_speaker: str | None = None) -> bool:
    """Short courtesy or chairing turns ("Thank you.", "Go ahead, Mr. X.") carry no content.

    A short turn that names the next speaker is a hand-over, whatever its wording."""
    if "?" in text.strip()[-80:]:
        return False
    words = _words(text)
    if len(words) > 40:
        return False
    rest = _PROCEDURAL.sub(" ", text)
    # names and titles (capitalised words) in a handover carry nothing either
    content = [w for w in _words(rest) if not w[0].isupper() and len(w) > 2]
    if len(content) <= 2 and len(words) <= 30:
        return True
    if next_speaker and len(content) <= 8:
        names = [w for w in _words(next_speaker) if len(w) > 2 and w[0].isupper()]
        return any(re.search(rf"\b{re.escape(n)}\b", text) for n in names[-2:])
    return False


def asks(text: str) -> bool:
    """Does this turn ask something? A question mark near its end, or asking phrasing."""
    tail = text.strip()[-400:]
    if "?" in tail:
        return True
    last = re.split(r"(?<=[.!])\s+", text.strip())[-1] if text.strip() else ""
    return bool(_ASK.search(last)) and len(_words(last)) < 60


def assign_acts(turns: list[Turn], speakers: dict[str, Speaker], preset: set[int]) -> None:
    live = [t for t in turns if t.index not in preset and t.speaker is not None]
    for i, t in enumerate(live):
        nxt_speaker = live[i + 1].speaker if i + 1 < len(live) else None
        handover_to = nxt_speaker if nxt_speaker != t.speaker else None
        t.act = "procedural" if is_procedural(t.text, handover_to) else "statement"
    substantive = [t for t in live if t.act != "procedural"]
    _infer_roles(substantive, speakers, live)

    def role(t: Turn) -> str:
        return speakers[t.speaker].role if t.speaker in speakers else "other"

    # questions
    nxt: dict[int, Turn | None] = {}
    following: Turn | None = None
    for t in reversed(substantive):
        nxt[t.index] = following
        following = t
    for t in substantive:
        after = nxt[t.index]
        answered_by_other = after is not None and after.speaker != t.speaker
        if role(t) == "interviewee":
            # a witness asking back only counts when an interviewer-type speaker answers it
            if asks(t.text) and answered_by_other and role(after) == "interviewer" and "?" in t.text[-300:]:
                t.act = "question"
        elif asks(t.text) or (role(t) == "interviewer" and answered_by_other and role(after) == "interviewee"):
            t.act = "question"
    # answers: substantive non-question turns by an answering speaker after an open question
    open_q: Turn | None = None
    answered = False
    for t in turns:
        if t.index in preset or t.speaker is None:
            continue
        if t.act == "question":
            open_q, answered = t, False
        elif t.act == "procedural":
            if answered:
                open_q = None  # a hand-over after the answer: the exchange is over
        elif open_q is not None and t.speaker != open_q.speaker and role(t) == "interviewee":
            t.act, answered = "answer", True
        elif open_q is not None and t.speaker == open_q.speaker:
            open_q = None  # the asker moved on without an answer


def _infer_roles(substantive: list[Turn], speakers: dict[str, Speaker], live: list[Turn]) -> None:
    unknown = [k for k, s in speakers.items() if not s.role]
    if not unknown:
        return
    stats: dict[str, dict[str, float]] = {}
    for key in speakers:
        mine = [t for t in substantive if t.speaker == key]
        total = [t for t in live if t.speaker == key]
        if not total:
            continue
        q = sum(1 for t in mine if asks(t.text))
        stats[key] = {
            "n": len(mine),
            "total": len(total),
            "q_rate": q / len(mine) if mine else 0.0,
            "words": median(len(_words(t.text)) for t in mine) if mine else 0.0,
            "procedural": (len(total) - len(mine)) / len(total),
        }
    if not stats:
        return
    talkers = [k for k in stats if stats[k]["n"]]
    if len(talkers) == 2:
        a, b = talkers
        sa, sb = stats[a], stats[b]
        asker = a if (sa["q_rate"], -sa["words"]) > (sb["q_rate"], -sb["words"]) else b
        for k in talkers:
            if not speakers[k].role:
                speakers[k].role = "interviewer" if k == asker else "interviewee"  # type: ignore[assignment]
    else:
        for k in talkers:
            if speakers[k].role:
                continue
            s = stats[k]
            speakers[k].role = "interviewer" if s["q_rate"] >= 0.4 else "interviewee"  # type: ignore[assignment]
    for k in stats:
        if not speakers[k].role:
            speakers[k].role = "other"  # only procedural turns
    # a speaker who mostly chairs (many procedural turns) and asks is an interviewer;
    # one who chairs without asking is "other"; neither is taken as answering
    for k, s in stats.items():
        if k in unknown and s["total"] >= 4 and s["procedural"] >= 0.3:
            speakers[k].role = "interviewer" if s["q_rate"] >= 0.15 else "other"  # type: ignore[assignment]
