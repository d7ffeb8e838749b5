"""Inputs whose names and cells carry terminal control characters (issue 19)."""

from __future__ import annotations

from pathlib import Path

from vintage_helpers import data_file

# Colours, a terminal title, a clear screen, a carriage return, a bell, NUL, a C1 CSI and a bidi
# override: none may reach a terminal raw from a table or Markdown.
CONTROLS = ("\x1b", "\r", "\x07", "\x00", "\x9b", "\u202e")
SERIES = "PRS\x1b[31mRED"
SECTOR = "\x1b]0;pwned\x07Evil\r\u202eSector"


def assert_no_raw_controls(text: str) -> None:
    """No control character of :data:`CONTROLS` in ``text``."""
    for control in CONTROLS:
        assert control not in text, repr(control)


def hostile_survey(directory: Path) -> Path:
    """Write a pr survey into ``directory``: one series, :data:`SERIES`, whose sector name
    (:data:`SECTOR`, so its title too) carries control characters. Returns the data file."""
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "pr.data.0.Current"
    data.write_bytes(
        data_file(
            *((SERIES, 2020, f"Q0{q}", f"{q}.5") for q in range(1, 5)), (SERIES, 2021, "Q01", "9")
        )
    )
    (directory / "pr.series").write_text(f"series_id\tsector_code\n{SERIES}\t3000\n")
    (directory / "pr.sector").write_text(f"sector_code\tsector_name\n3000\t{SECTOR}\n")
    return data
