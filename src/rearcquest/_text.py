"""Text for people on a terminal: control characters shown as escapes, never sent raw.

A leaf module shared by every human-facing renderer (tables, Markdown, text summaries, the error
line). A release stamp, a file name, a series title or a query's cell comes from a file or a
bucket that someone else wrote: an ``ESC [`` sequence, a carriage return or a bidi override in
it must not move the cursor, recolour or rewrite the terminal. JSON needs none of this
(``json.dumps`` escapes controls); CSV keeps the values as they are, for programs.
"""

from __future__ import annotations

# Bidi controls (Trojan Source, CVE-2021-42574) and the Unicode line and paragraph separators:
# not controls in the C0/C1 sense, but they reorder or break what the terminal shows.
_FORMAT = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029)


def _escape(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


# C0 (with TAB and LF), DEL and C1 controls, and the format characters above.
_CELL = {code: _escape(code) for code in (*range(0x20), *range(0x7F, 0xA0), *_FORMAT)}
# The same, but lines and tabs kept: for text that is laid out in lines (a summary, an error).
_LINES = {code: text for code, text in _CELL.items() if code not in (0x09, 0x0A)}


def visible(text: str) -> str:
    """``text`` with every control character as a visible escape: ESC as ``\\x1b``, CR as
    ``\\x0d``, a newline as ``\\x0a``, U+202E as ``\\u202e``. Backslashes are kept as they are,
    so escaping twice changes nothing.

    Args:
        text: one cell, name or stamp.

    Returns:
        Text that prints as one line and cannot move the cursor or change colours.
    """
    # isprintable() is False for every character escaped here (and for some that are kept,
    # such as other format characters); the common, clean cell takes the fast path.
    return text if text.isprintable() else text.translate(_CELL)


def visible_lines(text: str) -> str:
    """:func:`visible`, keeping newlines and tabs: for text made of lines (a summary, an error
    message)."""
    return text if text.isprintable() else text.translate(_LINES)
