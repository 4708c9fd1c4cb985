"""The README stays true: its quick start is two lines, its CLI reference is the CLI's help."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import ROOT


def test_readme_quick_start_is_two_commands_and_ci_runs_the_second():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```sh\n(.*?)```", readme, re.S).group(1)
    lines = [l for l in block.splitlines() if l.strip() and not l.strip().startswith("#")]
    assert len(lines) == 2
    assert "rag ingest corpus/" in lines[0] and "rag ui" in lines[0]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert lines[1].strip() in ci


def test_readme_cli_reference_is_current():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_usage.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_help_of_every_command():
    from rag.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert set(sub.choices) >= {"ingest", "stats", "chunks", "ask", "eval", "ui"}
    for name, p in sub.choices.items():
        text = p.format_help()
        assert p.description, name
        assert "--store" in text and "--chroma-url" in text


def test_usage_error_exits_2(capsys):
    import pytest

    from rag.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["ingest"])
    assert exc.value.code == 2


def test_bad_setting_is_a_clear_error(capsys, monkeypatch):
    from rag.cli import main

    monkeypatch.setenv("RAG_K", "not-a-number")
    assert main(["stats"]) == 2
    err = capsys.readouterr().err
    assert "invalid settings" in err and "Traceback" not in err


def test_toml_settings_and_precedence(tmp_path, monkeypatch):
    from rag import load_settings

    (tmp_path / "rag.toml").write_text('[rag]\nk = 7\nstore = "from-toml"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert load_settings().k == 7
    monkeypatch.setenv("RAG_K", "9")
    assert load_settings().k == 9
    assert load_settings(k=3).k == 3
    assert str(load_settings().store) == "from-toml"
