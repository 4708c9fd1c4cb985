"""Rewrite the README's command-line reference from the CLI's own --help (so it cannot drift).

    .venv/bin/python scripts/readme_usage.py          # rewrite README.md
    .venv/bin/python scripts/readme_usage.py --check  # exit 1 if README.md is stale
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
START, END = "<!-- usage:start -->", "<!-- usage:end -->"


def usage() -> str:
    os.environ["COLUMNS"] = "100"
    from rag.cli import build_parser

    parser = build_parser()
    parts = ["```text", "$ rag --help", parser.format_help().rstrip()]
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():
        parts += ["", f"$ rag {name} --help", p.format_help().rstrip()]
    parts.append("```")
    return "\n".join(parts)


def render(readme: str) -> str:
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{usage()}\n{END}{tail}"


if __name__ == "__main__":
    path = ROOT / "README.md"
    current = path.read_text(encoding="utf-8")
    new = render(current)
    if "--check" in sys.argv:
        sys.exit(0 if new == current else "README.md is stale: run scripts/readme_usage.py")
    path.write_text(new, encoding="utf-8")
