"""The `rag` command line. Settings are built here, once, and passed down."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from ._errors import ConfigError, RagError, StoreReadOnlyError
from ._settings import Settings, load_settings

EPILOG = """\
settings: flags override RAG_* environment variables (RAG_STORE, RAG_CHROMA_URL, RAG_MODEL,
RAG_K, RAG_LLM, ...), which override a TOML file (--config, RAG_CONFIG or ./rag.toml, keys as
in `Settings`, optionally under [rag]). Everything runs offline on the bundled model.
"""


# ---------------------------------------------------------------------------- terminal output
# Stored text and file names reach the terminal only through these: a transcript's escape
# sequences cannot set the title or clear the screen, a newline in a file name cannot fake a line.
# JSON output is left as it is: json.dumps escapes C0 controls, and programs read it, not terminals.

from ._text import safe, safe_text  # noqa: E402  (in rag/_text.py: `rag eval` and `rag fit` print through them too)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse echoes unknown arguments raw
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {safe_text(message)}\n")


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("store")
    g.add_argument("--store", metavar="DIR", help="embedded Chroma store folder (default .rag/, env RAG_STORE)")
    g.add_argument("--chroma-url", metavar="URL", help="use a Chroma server instead, e.g. http://127.0.0.1:8000 (env RAG_CHROMA_URL)")
    g.add_argument("--model", metavar="NAME|PATH", help="embedding model (default all-MiniLM-L6-v2, bundled; env RAG_MODEL)")
    g.add_argument("--config", metavar="TOML", help="settings file (default ./rag.toml if present; env RAG_CONFIG)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="rag",
        description="Ask questions of interview transcripts and get answers cited to the exact passage.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rag {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "ingest",
        help="add transcripts (files or folders) to the store",
        description=(
            "Parse transcripts (.txt, .md, .vtt, .srt, .json) into speaker turns, pair each answer with "
            "its question, embed the passages and store them. Folders are read recursively; a "
            "transcript's id is its path relative to the folder given (its file name when given "
            "directly). Unchanged files are skipped; a changed file replaces its old version whole; a file "
            "with the same content as a stored transcript under another name is reported as a duplicate "
            "and not indexed twice."
        ),
        epilog="exit status: 0 every file went in, 1 some failed (the rest were ingested), 2 usage error",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="transcript files or folders")
    p.add_argument("--prune", action="store_true", help="remove stored transcripts not found among PATHs in this run")
    p.add_argument("--wait", action="store_true", help="wait for another running ingest instead of stopping")
    p.add_argument("--allow-empty", action="store_true",
                   help="let --prune remove every stored transcript, or prune with a folder that holds no transcript file")
    p.add_argument("--replace-from-elsewhere", action="store_true",
                   help="let a file replace a stored transcript with the same id that came from another file")
    p.add_argument("--json", action="store_true", help="print per-file results and a summary as JSON")
    _common(p)

    p = sub.add_parser("stats", help="what is in the store", description="Transcripts with title, date, speakers (name, role, turns) and passage counts by kind.")
    p.add_argument("--json", action="store_true", help="print JSON")
    _common(p)

    p = sub.add_parser("chunks", help="show stored passages", description="Every stored passage with its fields and citable text, to check what was indexed.")
    p.add_argument("transcript", nargs="?", help="only this transcript id")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    _common(p)

    p = sub.add_parser("ask", help="ask a question, get a cited answer", description="Answer a question from the stored transcripts, citing every claim.")
    p.add_argument("question", help="the question, in quotes")
    p.add_argument("--k", type=int, help="passages to retrieve (default 5, env RAG_K)")
    p.add_argument("--speaker", help="only passages by this speaker (partial names match)")
    p.add_argument("--transcript", help="only this transcript id")
    p.add_argument("--role", choices=["interviewer", "interviewee", "other"], help="only passages by speakers in this role")
    p.add_argument("--kind", choices=["answer", "introduction", "comment", "statement"], help="only this kind of passage")
    p.add_argument("--llm", metavar="SPEC", help="compose with an LLM, provider:model (e.g. ollama:llama3.1); default: extractive, no LLM")
    p.add_argument("--json", action="store_true", help="print the answer as JSON")
    _common(p)

    p = sub.add_parser("eval", help="run a question set and report metrics", description="Evaluate retrieval and answers on a question set (JSONL or YAML).")
    p.add_argument("questions", help="question set file")
    p.add_argument("--k", type=int, default=5, help="cut-off for hit@k and recall@k (default 5)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--out", metavar="DIR", help="write report.md, report.json and chart.png here")
    p.add_argument("--compare", metavar="REPORT.json", help="show each metric's change against an earlier report")
    p.add_argument("--baseline", choices=["naive", "bm25", "all"], help="also run baselines on the same transcripts and questions")
    p.add_argument("--transcripts", metavar="DIR", help="folder of the question set's transcripts, for the baselines (default: from the store)")
    _common(p)

    p = sub.add_parser(
        "fit",
        help="fit the ranking weights on a question set",
        description=(
            "Learn the ranking weights from questions whose passages are known (the question-set format of "
            "`rag eval`; its transcripts must be in the store). Figures are cross-validated by transcript: "
            "each transcript's questions are ranked with weights fitted on the others only. The defaults "
            "were fitted this way on 24 committee hearings (docs/EVALUATION.md)."
        ),
    )
    p.add_argument("questions", help="question set file (JSONL or YAML) with sources")
    p.add_argument("--folds", type=int, default=6, help="cross-validation folds, by transcript (default 6)")
    p.add_argument("--write", metavar="FILE", help="write the weights as a settings file (TOML) to use with --config")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _common(p)

    p = sub.add_parser("ui", help="start the chat app in the browser", description="Start the Streamlit chat app. Streamlit runs in this process, and the model and the passages "
                       "load as it starts, before the first visit (it prints 'rag: ready: N passages ...').")
    p.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--headless", action="store_true", help="do not open a browser")
    _common(p)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("interview-rag")
    except Exception:
        return "dev"


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        "store": Path(args.store) if getattr(args, "store", None) else None,
        "chroma_url": getattr(args, "chroma_url", None),
        "model": getattr(args, "model", None),
        "k": getattr(args, "k", None) if args.command == "ask" else None,
        "llm": getattr(args, "llm", None),
    }
    return load_settings(getattr(args, "config", None), **overrides)


def _check_text_args(args: argparse.Namespace) -> None:
    """Arguments that are text, not paths, must be valid UTF-8 (the shell passes bytes; Python keeps
    undecodable ones as surrogates, which the tokenizer and the store cannot take)."""
    for name, what in (("question", "the question"), ("speaker", "--speaker"), ("transcript", "--transcript")):
        value = getattr(args, name, None)
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ConfigError(f"{what} is not valid UTF-8 text: {safe(value)!s}",
                                  "Type it again in a UTF-8 terminal, or check the encoding of the script that passes it.") from None


def _check_store_writable(settings: Settings, command: str) -> None:
    """A store folder this user cannot write: `rag ingest` says so up front (inside Chroma it would
    fail with "attempt to write a readonly database"); the commands that only read it read a
    private copy (rag/_store.py, Store._working_copy), and say so."""
    from ._store import writable

    if settings.chroma_url or not settings.store.is_dir() or writable(settings.store):
        return
    if command == "ingest":
        raise _read_only(settings)
    print(f"rag: the store folder {safe(settings.store)} is read-only for this user: reading a temporary copy of it",
          file=sys.stderr)


def _read_only(settings: Settings) -> StoreReadOnlyError:
    return StoreReadOnlyError(f"the store folder {settings.store} is read-only for this user")


def _stdout_gone() -> int:
    """The reader of our output went away (`rag stats | head -1`): stop quietly, like other tools."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's last flush at exit must not fail again
    except (OSError, ValueError, AttributeError):  # stdout is not a file (captured in-process)
        pass
    return 141  # 128 + SIGPIPE, what a shell reports for a tool stopped by a closed pipe


def _error(exc: RagError) -> None:
    print(f"rag: error: {safe(exc)}\n{safe_text(exc.help_message)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings: Settings | None = None
    try:
        _check_text_args(args)
        settings = settings_from_args(args)
        if args.command != "ui":
            _check_store_writable(settings, args.command)
        code = COMMANDS[args.command](args, settings)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        return _stdout_gone()
    except ConfigError as exc:
        _error(exc)
        return 2
    except RagError as exc:
        _error(exc)
        return 1
    except KeyboardInterrupt:
        print("rag: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # the store's folder became read-only after the check, or is on a read-only file system
        if settings is not None and not settings.chroma_url and "readonly database" in str(exc):
            _error(_read_only(settings))
            return 1
        raise


# ---------------------------------------------------------------------------- commands


def _progress_bar(enabled: bool):
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            desc, unit = {"read": ("reading", " files"), "sentences": ("embedding sentences", " sentences")}.get(stage, ("embedding", " passages"))
            bar = bars[stage] = tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr)
        bar.total = total
        bar.n = done
        bar.refresh()

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return progress, close


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from ._ingest import ingest

    tty = sys.stderr.isatty() and not args.json
    progress, close = _progress_bar(tty)

    def on_file(r) -> None:
        if args.json:
            return
        line = f"{r.status:<9} {safe(r.transcript or r.path)}"
        if r.status in ("failed", "duplicate"):
            line += f": {safe(r.reason)}"
        elif r.status != "removed":
            line += f"  ({r.passages} passages, {r.speakers} speakers)"
        for text in [line] + [f"          warning: {safe(w)}" for w in r.warnings]:
            if tty:  # above the progress bars, which are cleared and drawn again below it
                from tqdm import tqdm

                tqdm.write(text, file=sys.stdout)
            else:
                print(text, flush=True)

    report = ingest(args.paths, settings, prune=args.prune, allow_empty=args.allow_empty,
                    replace_from_elsewhere=args.replace_from_elsewhere, on_file=on_file, progress=progress,
                    wait_for_lock=args.wait)
    close()
    summary = report.summary()
    if args.json:
        print(json.dumps({"files": [f.to_dict() for f in report.files], "summary": summary, "notes": report.notes,
                          "store": settings.describe_store()}, indent=2))
    else:
        parts = [f"{v} {k}" for k, v in summary.items() if k != "passages"]
        for note in report.notes:
            print(f"note: {safe(note)}", file=sys.stderr)
        print(f"done: {', '.join(parts) or 'nothing to do'}; {summary['passages']} passages written to {safe(settings.describe_store())}")
        if report.failed:
            print(f"{len(report.failed)} file(s) failed; fix them and run the same command again (the rest are in).", file=sys.stderr)
    return 1 if report.failed else 0


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    from ._store import Store

    store = Store(settings)
    manifest = store.manifest()
    data = [
        {
            "transcript": info.id,
            "title": info.title,
            "date": info.date,
            "source": info.source,
            "format": info.format,
            "speakers": [{"name": s.name, "tag": s.tag, "role": s.role, "turns": s.turns} for s in info.speakers],
            "passages": info.n_passages,
            "by_kind": info.counts,
            "units_by_kind": info.units,
        }
        for info in sorted(manifest.values(), key=lambda i: i.id)
    ]
    # transcripts an earlier chunker version holds that this one has not read yet (after an upgrade)
    unread = {v: missing for v, (_, missing) in store.earlier_copies().items() if missing}
    if args.json:
        print(json.dumps({"store": settings.describe_store(), "transcripts": data,
                          "passages": sum(d["passages"] for d in data),
                          "not_yet_read": {str(v): n for v, n in unread.items()}}, indent=2))
        return 0
    print(f"store: {safe(settings.describe_store())}  ({len(data)} transcripts, {sum(d['passages'] for d in data)} passages)")
    for v, n in unread.items():
        print(f"note: {n} transcript(s) stored by an earlier version of rag (chunker version {v}) are not searched "
              "until their folders are ingested again")
    for d in data:
        kinds = ", ".join(
            f"{d['units_by_kind'].get(k, n)} {safe(k)}" + (f" in {n} passages" if d["units_by_kind"].get(k, n) != n else "")
            for k, n in sorted(d["by_kind"].items())
        )
        print(f"\n{safe(d['transcript'])}  —  {safe(d['title'])}" + (f" ({safe(d['date'])})" if d["date"] else ""))
        print(f"  passages: {d['passages']} ({kinds})")
        for s in d["speakers"]:
            print(f"  {safe(s['name']):<40} {safe(s['role']):<12} {s['turns']} turns")
    return 0


def cmd_chunks(args: argparse.Namespace, settings: Settings) -> int:
    from ._store import Store

    store = Store(settings)
    passages, _ = store.all_passages(args.transcript)
    if args.transcript and not passages:
        known = ", ".join(sorted(store.manifest())) or "none"
        raise RagError(f"no transcript {args.transcript!r} in the store", f"Known transcripts: {safe(known)}")
    if args.json:
        print(json.dumps([p.to_dict() for p in passages], indent=2, ensure_ascii=False))
        return 0
    for p in passages:
        print(f"── {safe(p.chunk_id)}  [{safe(p.kind)}] {safe(p.speaker)} ({safe(p.role)})  chars {p.start_char}-{p.end_char}")
        if p.question:
            print(f"   Q ({safe(p.question_speaker)}): {safe_text(p.question[:300], '   ')}")
        print("   " + safe_text(p.text, "   "))
        print()
    return 0


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    from ._engine import Engine

    filters = {k: v for k, v in {"speaker": args.speaker, "transcript": args.transcript, "role": args.role, "kind": args.kind}.items() if v}
    engine = Engine(settings)
    answer = engine.ask(args.question, filters=filters)
    if args.json:
        # the notice (e.g. the LLM failed and the answer is extractive) belongs to the answer
        print(json.dumps({**answer.to_json(), "notice": answer.notice}, indent=2, ensure_ascii=False))
        return 0
    print(safe_text(answer.text))
    if answer.notice:
        print(f"\n({safe_text(answer.notice)})")
    if answer.citations:
        print("\nSources:")
        for c in answer.citations:
            p = c.passage
            # the person whose words are quoted: the answerer, or the asker for words of a question
            print(f"[{c.n}] {safe(c.speaker or 'Unattributed')} ({safe(c.role)}), {safe(p.transcript)} — {safe(p.chunk_id)}")
            if c.field == "question":
                print(f"    in a question to {safe(p.speaker or 'the answerer')}")
            elif p.question:
                q = p.question if len(p.question) < 200 else "…" + p.question[-200:]
                print(f"    asked by {safe(p.question_speaker)}: {safe_text(q, '    ')}")
            print(f"    “{safe_text(c.quote, '     ')}”")
    elif answer.abstained and answer.retrieved:
        print("\nPossibly related:")
        for r in answer.retrieved[:3]:
            print(f"  - {safe(r.passage.speaker)}, {safe(r.passage.chunk_id)}: {safe_text(r.passage.text[:160], '    ')}…")
    return 0


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from ._evaluate import run_cli

    return run_cli(args, settings)


def cmd_fit(args: argparse.Namespace, settings: Settings) -> int:
    from ._fit import run_cli

    return run_cli(args, settings)


def cmd_ui(args: argparse.Namespace, settings: Settings) -> int:
    app = Path(__file__).resolve().parent.parent / "ui" / "app.py"
    if not app.exists():
        raise RagError(f"the app is missing at {app}", "Reinstall the project from its checkout.")
    os.environ["RAG_STORE"] = str(settings.store.resolve())
    os.environ["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] = "false"
    if settings.chroma_url:
        os.environ["RAG_CHROMA_URL"] = settings.chroma_url
    os.environ["RAG_MODEL"] = settings.model
    url = f"http://{args.host}:{args.port}"
    print(f"rag: starting the chat app on http://{safe(args.host)}:{args.port} (Ctrl+C to stop)", file=sys.stderr, flush=True)

    # Streamlit runs in this process, so the engine warmed up here is the one the app uses: the
    # first visitor finds the model and the passages loaded (rag.shared_engine). It starts once the
    # server answers: begun before, it slowed the server's own start (2.4 s to answer instead of
    # 0.8 s at 100,000 passages), while the browser could not load the page meanwhile.
    from ._library import shared_engine
    from ._settings import load_settings

    def said(status) -> None:
        if status.error:
            print(f"rag: the index is not loaded yet: {safe(status.error)}", file=sys.stderr, flush=True)
        else:
            print(f"rag: ready: {status.passages:,} passages of {status.transcripts:,} transcript(s) loaded in "
                  f"{status.seconds:.1f} s", file=sys.stderr, flush=True)

    def warm() -> None:
        shared_engine(load_settings(), on_ready=said)  # the settings the app reads from this environment
        print("rag: loading the model and the passages in the background…", file=sys.stderr, flush=True)

    # Headless always: on a machine where Streamlit never ran, a non-headless start stops at its
    # "Welcome to Streamlit! ... Email:" prompt (and exits 255 with no terminal). The browser is
    # opened here instead, once the server answers, when there is a screen to open it on.
    flags = {
        "server_port": args.port, "server_address": args.host, "server_headless": True,
        "browser_gatherUsageStats": False, "client_showErrorDetails": "none",
    }
    import threading

    from streamlit import config as st_config
    from streamlit.web import bootstrap

    st_config._main_script_path = str(app)  # so ui/.streamlit/config.toml applies, as with `streamlit run`
    bootstrap.load_config_options(flag_options=flags)
    local = url.replace("://0.0.0.0:", "://127.0.0.1:")
    threading.Thread(target=_when_up, args=(local, warm, True), name="rag-warm-when-up", daemon=True).start()
    if not args.headless and not os.environ.get("CI") and _has_screen():
        import webbrowser

        threading.Thread(target=_when_up, args=(url, lambda: webbrowser.open(url)), daemon=True).start()
    bootstrap.run(str(app), False, [], flags)  # until Ctrl+C or SIGTERM
    return 0


def _has_screen() -> bool:
    """Is there a graphical session to open a browser in? (On Linux without one, Python's
    webbrowser would start a text browser inside this terminal.)"""
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _when_up(url: str, then: Callable[[], Any], anyway: bool = False, wait_s: float = 120.0) -> None:
    """``then()`` as soon as the server answers its health check (and after ``wait_s`` without
    an answer only when ``anyway``)."""
    import time
    import urllib.request

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    then()
                    return
        except OSError:
            time.sleep(0.05)
    if anyway:
        then()


COMMANDS = {
    "ingest": cmd_ingest,
    "stats": cmd_stats,
    "chunks": cmd_chunks,
    "ask": cmd_ask,
    "eval": cmd_eval,
    "fit": cmd_fit,
    "ui": cmd_ui,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
