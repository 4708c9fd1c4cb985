"""Upload: add transcripts from the browser. Type allowlist, size cap, sanitized names; files are
written under <store>/uploads/ only and ingested with per-file results."""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path

_UI = Path(__file__).resolve().parent.parent
if str(_UI) not in sys.path:
    sys.path.insert(0, str(_UI))

import streamlit as st

import _shared as ui
from rag import IngestLockedError, RagError, StoreUnavailableError, ingest

ui.inject_css()
st.title("Upload transcripts")
settings = ui.get_settings()
cap_mb = float(settings.upload_max_mb)
cap = int(cap_mb * 1024 * 1024)
target_dir = ui.uploads_dir(settings)

st.markdown(
    "Add interview transcripts in the formats `rag ingest` reads: plain text or Markdown with speaker "
    "tags (`Name: ...`, optional YAML front matter), WebVTT, SubRip or JSON."
)
st.caption(
    f"Allowed: {', '.join(ui.UPLOAD_SUFFIXES)} · up to {cap_mb:g} MB per file · "
    f"saved in {ui.md_escape(str(target_dir))} and indexed in {ui.md_escape(settings.describe_store())}"
)

gen = st.session_state.setdefault("upload_gen", 0)
files = st.file_uploader(
    "Transcript files",
    type=[s.lstrip(".") for s in ui.UPLOAD_SUFFIXES],
    accept_multiple_files=True,
    max_upload_size=max(1, math.ceil(cap_mb)),
    key=f"uploader-{gen}",
)


def save_uploads(files) -> tuple[list[Path], list[dict]]:
    """Check and write the uploaded files; returns (written paths, rejections)."""
    written: list[Path] = []
    rejected: list[dict] = []
    used: set[str] = set()
    target_dir.mkdir(parents=True, exist_ok=True)
    root = target_dir.resolve()
    for f in files:
        original = f.name
        name = ui.safe_filename(original)
        suffix = Path(name).suffix.lower()
        if suffix not in ui.UPLOAD_SUFFIXES:
            rejected.append({"file": original, "status": "rejected", "reason": f"type {suffix or '(none)'} not allowed; use {', '.join(ui.UPLOAD_SUFFIXES)}"})
            continue
        data = f.getvalue()
        if len(data) > cap:
            rejected.append({"file": original, "status": "rejected", "reason": f"{len(data) / 1048576:.1f} MB is over the {cap_mb:g} MB limit"})
            continue
        if not data.strip():
            rejected.append({"file": original, "status": "rejected", "reason": "the file is empty"})
            continue
        stem, n = Path(name).stem, 2
        while name.lower() in used:  # two uploads with the same cleaned name in one batch
            name = f"{stem}-{n}{suffix}"
            n += 1
        used.add(name.lower())
        dest = (root / name).resolve()
        if dest.parent != root:  # cannot happen after safe_filename; checked anyway
            rejected.append({"file": original, "status": "rejected", "reason": "unsafe file name"})
            continue
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".upload-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, dest)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            rejected.append({"file": original, "status": "rejected", "reason": f"cannot save: {exc.strerror or exc}"})
            continue
        written.append(dest)
    return written, rejected


if files:
    st.write(f"{len(files)} file(s) selected.")
    if st.button(f"Ingest {len(files)} file(s)", type="primary", key="ingest", icon=":material/upload:"):
        rows: list[dict] = []
        written, rejected = save_uploads(files)
        rows.extend(rejected)
        if written:
            bar = st.progress(0.0, text="Reading files…")
            status = st.status("Ingesting…", expanded=True)

            def progress(stage: str, done: int, total: int) -> None:
                frac = (done / total) if total else 1.0
                if stage == "read":
                    bar.progress(min(0.3 * frac, 0.3), text=f"Reading and splitting files ({done}/{total})")
                else:
                    bar.progress(min(0.3 + 0.7 * frac, 1.0), text=f"Embedding passages ({done}/{total})")

            def on_file(r) -> None:
                mark = "✅" if r.status in ("added", "updated", "unchanged") else "⚠️" if r.status == "duplicate" else "❌"
                line = f"{mark} {Path(r.path).name}: {r.status}"
                line += f" — {r.passages} passages, {r.speakers} speakers" if r.status not in ("failed", "duplicate") else f" — {r.reason}"
                status.text(line)

            try:
                with ui.UPLOAD_LOCK:
                    report = ingest(written, settings, embedder=ui.ingest_embedder(settings), on_file=on_file, progress=progress)
            except IngestLockedError as exc:
                status.update(label="Another ingest is running", state="error")
                st.warning(ui.md_escape(f"{exc} {exc.help_message}"))
                report = None
            except StoreUnavailableError as exc:
                status.update(label="The Chroma server is not reachable", state="error")
                st.error(ui.md_escape(f"{exc} {exc.help_message}"))
                report = None
            except RagError as exc:
                status.update(label="Ingest failed", state="error")
                st.error(ui.md_escape(f"{exc} {exc.help_message}"))
                report = None
            except Exception as exc:  # no traceback in the page; the server log has it
                ui.log.exception("upload ingest failed")
                status.update(label="Ingest failed", state="error")
                st.error(ui.md_escape(f"Ingest failed: {type(exc).__name__}: {exc}"))
                report = None
            if report is not None:
                bar.progress(1.0, text="Done")
                ok = [r for r in report.files if r.status not in ("failed", "duplicate")]
                status.update(label=f"Ingested {len(ok)} of {len(report.files)} file(s)", state="complete" if not report.failed else "error", expanded=False)
                for r in report.files:
                    if r.status in ("failed", "duplicate"):  # keep only what is in the index
                        Path(r.path).unlink(missing_ok=True)
                    rows.append({
                        "file": Path(r.path).name, "status": r.status, "passages": r.passages, "speakers": r.speakers,
                        "reason": r.reason, "warnings": "; ".join(r.warnings),
                    })
        st.session_state["upload_results"] = rows
        st.session_state["upload_gen"] = gen + 1  # clear the uploader for the next batch
        st.rerun()

rows = st.session_state.get("upload_results")
if rows:
    st.subheader("Results")
    good = sum(1 for r in rows if r["status"] in ("added", "updated", "unchanged"))
    bad = len(rows) - good
    if good:
        st.success(f"{good} file(s) in the index.")
    if bad:
        st.error(f"{bad} file(s) not added: see the reasons below.")
    st.dataframe(ui.table(rows), hide_index=True, width="stretch",
                 column_order=["file", "status", "passages", "speakers", "reason", "warnings"],
                 column_config={"reason": st.column_config.TextColumn(width="large"),
                                "warnings": st.column_config.TextColumn(width="large")})
    # a table cell shows one line: every reason and warning, whole, below it
    notes = [r for r in rows if r.get("reason") or r.get("warnings")]
    if notes:
        with st.container(key="upload_notes"):
            for r in notes:
                said = "; ".join(x for x in (r.get("reason"), r.get("warnings")) if x)
                st.markdown(f"**{ui.md_escape(r['file'])}** ({ui.md_escape(r['status'])}): {ui.md_escape(said)}")
    if good:
        st.page_link(ui.page("chat", ui.CHAT_PAGE), label="Ask about them in the chat", icon=":material/chat:")
