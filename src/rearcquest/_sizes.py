"""The one size formatter, shared by the index page and the command summaries.

A leaf module: the index must not import :mod:`rearcquest.output.render`, which imports the analytics.
"""

from __future__ import annotations


def human_size(size: float) -> str:
    """Return a size for people in decimal units: ``102 B``, ``1.2 KB``, ``3.4 MB``.

    A value that rounds to 1000 of a unit is shown in the next one: 999,960 bytes is
    ``1.0 MB``, never ``1000.0 KB``.

    Args:
        size: a number of bytes.

    Returns:
        The size with one decimal and its unit (bytes without decimals).
    """
    if abs(size) < 1000:
        return f"{size:.0f} B"
    value = size / 1000
    for unit in ("KB", "MB", "GB", "TB"):
        if abs(round(value, 1)) < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} PB"
