"""`rag ui` on a machine where Streamlit never ran: no e-mail prompt, no terminal needed, the
app answers; and it opens the browser itself only when there is a screen to open it on."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT
from servers import app_healthy, free_port

pytestmark = pytest.mark.slow


@pytest.mark.timeout(120)
@pytest.mark.parametrize("flags", [[], ["--headless"]])
def test_rag_ui_starts_with_no_prompt_and_no_terminal(tmp_path, seed_store, flags):
    home = tmp_path / "home"  # no ~/.streamlit: Streamlit's first run
    home.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "DISPLAY", "WAYLAND_DISPLAY")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT))
    rag = Path(sys.executable).with_name("rag")
    cmd = [str(rag), "ui", "--port", str(port), "--store", str(seed_store.store), *flags]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None and not app_healthy(url):
            time.sleep(0.5)
        assert proc.poll() is None, f"rag ui exited with {proc.returncode}: {proc.stdout.read().decode(errors='replace')}"
        assert app_healthy(url)
        with urllib.request.urlopen(url, timeout=5) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
    finally:
        proc.terminate()  # `rag ui` passes it on to the app
        try:
            out = proc.communicate(timeout=30)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            out = proc.communicate()[0].decode(errors="replace")
            pytest.fail(f"the app outlived `rag ui`: {out[-2000:]}")
    assert "Email" not in out and "Welcome to Streamlit" not in out
    assert "starting the chat app" in out
    assert not (home / ".streamlit" / "credentials.toml").exists()


@pytest.mark.timeout(150)
def test_rag_ui_warms_up_when_the_server_starts(tmp_path, seed_store):
    """The model and the passages are loaded right after `rag ui` starts, before anyone visits,
    and the launcher says so with the passage count."""
    from rag import Engine

    n = sum(i.n_passages for i in Engine(seed_store).transcripts().values())
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "DISPLAY", "WAYLAND_DISPLAY")}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    rag = Path(sys.executable).with_name("rag")
    proc = subprocess.Popen([str(rag), "ui", "--port", str(port), "--store", str(seed_store.store), "--headless"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip())
            if line.startswith("rag: ready:"):
                break
        ready = [x for x in lines if x.startswith("rag: ready:")]
        assert ready, "\n".join(lines)
        # nobody has visited the app: the warm-up ran because the server started
        assert re.fullmatch(rf"rag: ready: {n:,} passages of 1 transcript\(s\) loaded in [\d.]+ s", ready[0])
        assert "rag: loading the model and the passages in the background…" in lines
        while not app_healthy(f"http://127.0.0.1:{port}") and time.monotonic() < deadline:
            time.sleep(0.3)
        assert app_healthy(f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.communicate()
            pytest.fail("`rag ui` did not stop on SIGTERM")


def test_the_browser_is_opened_only_with_a_screen(monkeypatch):
    from rag import cli

    for var in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(cli.sys, "platform", "linux")
    assert not cli._has_screen()  # webbrowser would start a text browser in this terminal
    monkeypatch.setenv("DISPLAY", ":0")
    assert cli._has_screen()
