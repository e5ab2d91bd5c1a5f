"""MODEL_CARD.md, written beside an exported model: what it is, how it was trained, how to
evaluate it and the command that retrains it."""

from __future__ import annotations

import sys
from pathlib import Path

from engine.files import write_text_atomic

MODEL_CARD_NAME = "MODEL_CARD.md"


def retrain_command() -> str:
    """The `python -m engine ...` command line this process was started with."""
    return "python -m engine " + " ".join(sys.argv[1:])


def shown_path(path: str | Path) -> str:
    """A path as a card shows it: relative to the repository when inside it, since cards
    travel with the repository."""
    path, root = Path(path).resolve(), Path(__file__).resolve().parents[2]
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def write_model_card(folder: Path, title: str, lines: list[str],
                     command: str | None = None) -> Path:
    """`# title`, the card's `lines` ("- Key: ...") and a last "- Retrain: `command`" line
    (default: this process's command line)."""
    path = Path(folder) / MODEL_CARD_NAME
    text = [f"# {title}", "", *lines, f"- Retrain: `{command or retrain_command()}`", ""]
    return write_text_atomic(path, "\n".join(text))
