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
from ._text import STOPWORDS

# Courtesy and chairing phrases: generic English meeting language. Words of one kind of meeting
# ("merci", "petition", "the member for", "point of order", "five-minute", "Chair" as a form of
# address) were taken out: ingested without them, the training split's ranking was the same
# (cross-validated hit@1 0.697, hit@5 0.852 against 0.849) and so was the development set's
# (docs/EVALUATION.md, ablation).
_PROCEDURAL = re.compile(
    r"\b(thank(s| you)( very much| so much)?|welcome|good (morning|afternoon|evening)|"
    r"go ahead|please (proceed|continue|go ahead)|carry on|over to you|(you have|has) the floor|"
    r"the floor is (yours|now)|(is|are) next|next (question|speaker)|i (now )?call( on| upon)?|"
    r"(i'll|i will|we'll|we will|let's|let me) (now )?(go|turn|move|come|bring|hand) (it |over )?(to|in|back)|"
    r"(your|the) time is (up|over)|(you have|there are|there's) (\w+ )?(seconds|minutes?) (left|remaining)|"
    r"order,? please|the meeting is (adjourned|suspended)|we will (now )?(suspend|resume|adjourn)|"
    r"okay|ok|all right|alright|right|sure|yes|no|great|excellent|fine|very good|indeed|madam|sir|"
    r"(can|could) you hear me|you're (on )?mute[d]?|(we'll|we will|i'll|i will|let's) (now )?(continue|begin|start|go|move on|wait)( with| to)?|"
    r"(the )?next (question|questions|speaker)( will be| is| are)?( by| from)?|"
    r"(the floor|it is) (now )?(goes|going|over) to|you (now )?have the floor|(please )?keep it (brief|short)|"
    r"(please )?(provide|give) a (short|brief) (response|answer)|(you have|there is) (time|about|just) ?(for )?(one|a) (more )?(short|brief|final)? ?(question|minute|response)s?)\b",
    re.I,
)
_ASK = re.compile(
    r"^(could|can|would|will|do|does|did|is|are|was|were|have|has|what|why|how|when|where|which|who)\b|"
    # imperatives ask only at the head of the sentence: "Tell us...", "Please explain..."
    r"^((so|and|now|then|finally|lastly|perhaps|maybe|please)\b[,\s]+)*(tell (me|us)|explain|describe)\b|"
    r"\b(i('d| would) like to ask|my (first |next |last |final )?question|i want to ask|can i ask|may i ask|"
    r"i wonder(ed)? (if|whether)|could you|can you|would you)\b",
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
        return _names(next_speaker, text)
    return False


def has_content(text: str) -> bool:
    """Anything left besides courtesies, names and function words? (lower-case words only:
    a capitalised word may be a name or title, as in "Minister.")"""
    rest = _PROCEDURAL.sub(" ", text)
    return any(not w[0].isupper() and w.lower().strip("'’-") not in STOPWORDS and len(w) > 1 for w in _words(rest))


def _names(speaker: str, text: str) -> bool:
    names = [w for w in _words(speaker) if len(w) > 2 and w[0].isupper()]
    return any(_has_word(text, n) for n in names[-2:])


def _is_word_char(text: str, i: int) -> bool:
    return 0 <= i < len(text) and (text[i].isalnum() or text[i] == "_")


def _has_word(text: str, word: str) -> bool:
    """re.search(rf"\b{re.escape(word)}\b", text), without compiling a pattern per speaker
    (thousands of speakers would overflow the regex cache and compile each time)."""
    at = text.find(word)
    while at >= 0:
        end = at + len(word)
        if (_is_word_char(text, at - 1) != _is_word_char(text, at)
                and _is_word_char(text, end - 1) != _is_word_char(text, end)):
            return True
        at = text.find(word, at + 1)
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
    _infer_roles([t for t in live if t.act != "procedural"], speakers, live)

    def role(t: Turn) -> str:
        return speakers[t.speaker].role if t.speaker in speakers else "other"

    # a short reply by an answering speaker to someone else's question, with some content left
    # once courtesies and names are removed ("It was cheap."), is an answer, not a courtesy
    for i, t in enumerate(live):
        prev = live[i - 1] if i else None
        if (t.act == "procedural" and role(t) == "interviewee" and prev is not None
                and prev.speaker != t.speaker and prev.act != "procedural" and asks(prev.text)
                and has_content(t.text)):
            t.act = "statement"
    substantive = [t for t in live if t.act != "procedural"]

    # questions
    nxt: dict[int, Turn | None] = {}
    following: Turn | None = None
    for t in reversed(substantive):
        nxt[t.index] = following
        following = t
    next_live = {t.index: (live[i + 1] if i + 1 < len(live) else None) for i, t in enumerate(live)}
    for t in substantive:
        after = nxt[t.index]
        answered_by_other = after is not None and after.speaker != t.speaker
        if role(t) == "interviewee":
            # a witness asking back only counts when an interviewer-type speaker replies to it
            # (however briefly); when that speaker asks the next question instead, the witness's
            # turn was an answer (with a rhetorical or reported question in it)
            # and then the witness goes on (a chair's hand-over to the next member is no reply)
            reply = next_live[t.index]
            resumes = next_live[reply.index] if reply is not None else None
            if (asks(t.text) and "?" in t.text[-300:] and reply is not None and reply.speaker != t.speaker
                    and role(reply) == "interviewer" and not asks(reply.text)
                    and resumes is not None and resumes.speaker == t.speaker):
                t.act = "question"
        elif asks(t.text) or (role(t) == "interviewer" and answered_by_other and role(after) == "interviewee"):
            t.act = "question"
    # answers: substantive non-question turns by an answering speaker after an open question;
    # several witnesses may answer one question, handed over by the chair in between
    open_q: Turn | None = None
    answered = False
    following_live: dict[int, Turn | None] = {}
    nxt_sub: Turn | None = None
    for t in reversed(live):
        following_live[t.index] = nxt_sub
        if t.act != "procedural":
            nxt_sub = t
    for t in live:
        if t.act == "question":
            if role(t) == "interviewee" and open_q is not None and open_q.speaker != t.speaker:
                continue  # a witness asking back: the question on the table is still the member's
            open_q, answered = t, False
        elif t.act == "procedural":
            # a hand-over after the answer ends the exchange, unless it brings in another
            # answerer on the same question
            nxt_t = following_live[t.index]
            if answered and open_q is not None and not (
                nxt_t is not None and nxt_t.speaker != open_q.speaker and role(nxt_t) == "interviewee"
            ):
                open_q = None
        elif open_q is not None and t.speaker != open_q.speaker and role(t) == "interviewee":
            t.act, answered = "answer", True
        elif open_q is not None and t.speaker == open_q.speaker:
            open_q = None  # the asker moved on without an answer


def _infer_roles(substantive: list[Turn], speakers: dict[str, Speaker], live: list[Turn]) -> None:
    unknown = {k for k, s in speakers.items() if not s.role}
    if not unknown:
        return
    # each speaker's turns, grouped once (not searched per speaker: thousands of speakers)
    by_speaker: dict[str | None, list[Turn]] = {}
    for t in substantive:
        by_speaker.setdefault(t.speaker, []).append(t)
    live_count: dict[str | None, int] = {}
    for t in live:
        live_count[t.speaker] = live_count.get(t.speaker, 0) + 1
    asked = {t.index for t in substantive if asks(t.text)}
    stats: dict[str, dict[str, float]] = {}
    for key in speakers:
        mine = by_speaker.get(key, [])
        total = live_count.get(key, 0)
        if not total:
            continue
        q = sum(1 for t in mine if t.index in asked)
        stats[key] = {
            "n": len(mine),
            "total": total,
            "q_rate": q / len(mine) if mine else 0.0,
            "words": median(len(_words(t.text)) for t in mine) if mine else 0.0,
            "procedural": (total - len(mine)) / total,
        }
    if not stats:
        return
    talkers = [k for k in stats if stats[k]["n"]]
    if len(stats) == 2 and len(talkers) < 2:
        talkers = list(stats)  # two speakers, one of them only brief: still a two-sided exchange
    if len(talkers) == 2:
        a, b = talkers
        sa, sb = stats[a], stats[b]
        known = {k: speakers[k].role for k in talkers if speakers[k].role in ("interviewer", "interviewee")}
        if len(known) == 1:  # one side is given: the other is its counterpart
            (k0, r0), = known.items()
            asker = k0 if r0 == "interviewer" else (b if k0 == a else a)
        else:
            asker = a if (sa["q_rate"], -sa["words"]) > (sb["q_rate"], -sb["words"]) else b
        for k in talkers:
            if not speakers[k].role:
                speakers[k].role = "interviewer" if k == asker else "interviewee"  # type: ignore[assignment]
    else:
        pending: list[str] = []
        for k in talkers:
            if speakers[k].role:
                continue
            if _chairs(stats[k]):  # see below
                speakers[k].role = "interviewer" if stats[k]["q_rate"] >= 0.15 else "other"  # type: ignore[assignment]
            elif stats[k]["q_rate"] >= 0.4:
                speakers[k].role = "interviewer"  # type: ignore[assignment]
            else:
                pending.append(k)
        # Who answers? A speaker who rarely asks is an interviewee when their turns mostly come
        # right after someone else's question, or after another answerer's turn (a panel of
        # witnesses adding to each other). One who speaks without being asked (a member's
        # statement, a petition) is "other".
        previous: dict[int, Turn | None] = {}
        following: dict[int, Turn | None] = {}
        direct: set[int] = set()  # turns that follow the previous substantive turn with no hand-over
        last: Turn | None = None
        handed_over = False
        subs = {t.index for t in substantive}
        for t in live:
            if t.index not in subs:
                handed_over = handed_over or t.speaker != (last.speaker if last else None)
                continue
            previous[t.index] = last
            if last is not None:
                following[last.index] = t
            if last is not None and not handed_over:
                direct.add(t.index)
            last, handed_over = t, False
        # Passes until nothing changes; each pass judges the pending speakers against the
        # answerers known when it starts. A speaker's counts change only when a speaker next to
        # one of their turns becomes an answerer, so the counts are kept up to date as that
        # happens and only those speakers are judged again (linear in the turns, not speakers
        # times turns per pass).
        answerers = {k for k, sp in speakers.items() if sp.role == "interviewee"}
        follows: dict[str, int] = {}
        prompts: dict[str, int] = {}

        def prompted(t: Turn) -> bool:  # t follows a question, or an interviewer's turn directly
            prev = previous[t.index]
            return prev is not None and prev.speaker != t.speaker and (
                prev.index in asked or (t.index in direct and speakers[prev.speaker].role == "interviewer"))

        for k in pending:
            f = p = 0
            for t in by_speaker[k]:
                prev, nxt_t = previous[t.index], following.get(t.index)
                if prompted(t) or (prev is not None and prev.speaker != k and prev.speaker in answerers):
                    f += 1
                if nxt_t is not None and nxt_t.speaker != k and nxt_t.speaker in answerers:
                    p += 1
            follows[k], prompts[k] = f, p
        todo = list(pending)
        waiting = set(pending)
        while todo:
            # a member who challenges without question marks also speaks after witnesses,
            # but witnesses reply to them: answerers follow more than they prompt
            promoted = [k for k in todo if follows[k] / len(by_speaker[k]) >= 0.5 and follows[k] > prompts[k]]
            for k in promoted:
                speakers[k].role = "interviewee"  # type: ignore[assignment]
                waiting.discard(k)
            touched: dict[str, None] = {}
            for k in promoted:
                answerers.add(k)
            for k in promoted:
                for t in by_speaker[k]:
                    nxt_t, prev = following.get(t.index), previous[t.index]
                    if nxt_t is not None and nxt_t.speaker != k and nxt_t.speaker in waiting and not prompted(nxt_t):
                        # nxt_t's speaker now follows an answerer (unless prev was one already)
                        follows[nxt_t.speaker] += 1  # type: ignore[index]
                        touched[nxt_t.speaker] = None  # type: ignore[index]
                    if prev is not None and prev.speaker != k and prev.speaker in waiting:
                        prompts[prev.speaker] += 1  # type: ignore[index]
                        touched[prev.speaker] = None  # type: ignore[index]
            todo = [k for k in touched if k in waiting]
        for k in (k for k in pending if k in waiting):
            speakers[k].role = "interviewer" if prompts[k] / len(by_speaker[k]) >= 0.5 else "other"  # type: ignore[assignment]
    for k in stats:
        if not speakers[k].role:
            speakers[k].role = "other"  # only procedural turns
    # a speaker who mostly chairs (many procedural turns) and asks is an interviewer;
    # one who chairs without asking is "other"; neither is taken as answering
    pair = set(talkers) if len(talkers) == 2 else set()  # a two-sided exchange has no chair
    for k, s in stats.items():
        if k in unknown and k not in pair and _chairs(s):
            speakers[k].role = "interviewer" if s["q_rate"] >= 0.15 else "other"  # type: ignore[assignment]


def _chairs(s: dict[str, float]) -> bool:
    return s["total"] >= 4 and s["procedural"] >= 0.3
