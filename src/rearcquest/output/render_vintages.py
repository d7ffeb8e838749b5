"""Renderers of ``rq releases`` and ``rq revisions``: JSON, CSV, Markdown, grids and a chart.

Numbers follow ``rq analyze``: exact decimals with the digits the source prints, written in JSON
as numbers with those digits (:func:`rearcquest.output.render.to_json`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rearcquest.errors import RqError
from rearcquest.output.render import (
    TextTable,
    _png,
    json_text,
    require_matplotlib,
    tables_markdown,
)

if TYPE_CHECKING:
    from rearcquest.data.vintages import Revisions
    from rearcquest.records.releases import Release

# The chart shows this many of the largest revisions.
CHART_ROWS = 20
_KEY = ("series_id", "year", "period")


def releases_json(releases: Sequence[Release]) -> str:
    """``[{"release", "synced_at", "changed", "removed", "files": {name: {"sha256",
    "version_id"}}}]``, newest first as given."""
    return json.dumps([r.to_dict() for r in releases], indent=2)


def releases_grid(releases: Sequence[Release]) -> TextTable:
    """One row per release: its stamp, when it was synced, and the files it changed."""
    rows = [
        (
            r.release,
            r.synced_at,
            str(len(r.files)),
            ", ".join(r.changed) + (f" (removed: {', '.join(r.removed)})" if r.removed else ""),
        )
        for r in releases
    ]
    notes = () if releases else ("no release logged yet: a sync that changes files records one",)
    return TextTable(
        "Releases, newest first",
        ("release", "synced_at", "files", "changed"),
        rows,
        (False, False, True, False),
        notes,
    )


def revisions_json(result: Revisions) -> str:
    """The ``rq revisions`` JSON document (:func:`rearcquest.data.vintages.revisions_doc`)."""
    from rearcquest.data.vintages import revisions_doc

    return json_text(revisions_doc(result)) + "\n"


def revisions_csv(result: Revisions) -> str:
    """One CSV: ``kind`` (revised, added, removed), the key, ``old``, ``new`` and ``change``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("kind", *_KEY, "old", "new", "change"))
    for row in result.revised.iter_rows(named=True):
        writer.writerow(("revised", *(row[k] for k in _KEY), row["old"], row["new"], row["change"]))
    for row in result.added.iter_rows(named=True):
        writer.writerow(("added", *(row[k] for k in _KEY), "", row["value"], ""))
    for row in result.removed.iter_rows(named=True):
        writer.writerow(("removed", *(row[k] for k in _KEY), row["value"], "", ""))
    return out.getvalue()


def revisions_grids(result: Revisions, largest: int | None = None) -> list[TextTable]:
    """The per-series summary, then every revised value, or only the ``largest`` largest (by
    absolute change; the biggest first) and how many more there are."""
    heading = f"{result.file}: release {result.from_release} -> {result.to_release}"
    summary = TextTable(
        f"Revisions per series, {heading}",
        ("series_id", "revised", "added", "removed", "largest_change"),
        [
            (
                r["series_id"],
                str(r["revised"]),
                str(r["added"]),
                str(r["removed"]),
                r["largest_change"] or "",
            )
            for r in result.summary.iter_rows(named=True)
        ],
        (False, True, True, True, True),
        (
            f"{result.revised.height} values revised, {result.added.height} observations added, "
            f"{result.removed.height} removed",
        ),
    )
    revised = result.revised
    notes: tuple[str, ...] = ()
    title = f"Revised values, {heading}"
    if largest is not None and revised.height > largest:
        revised = revised.sort("_size", descending=True, maintain_order=True).head(largest)
        title = f"The {largest} largest revisions, {heading}"
        notes = (
            f"{result.revised.height - largest:,} more revised values: --all lists every one, "
            "--format csv writes them all",
        )
    values = TextTable(
        title,
        (*_KEY, "old", "new", "change"),
        [
            (r["series_id"], str(r["year"]), r["period"], r["old"], r["new"], r["change"])
            for r in revised.iter_rows(named=True)
        ],
        (False, True, False, True, True, True),
        notes,
    )
    return [summary, values]


def revisions_chart(result: Revisions) -> bytes:
    """A PNG: the largest revisions (by absolute change), one bar each.

    Raises:
        ConfigError: matplotlib is not installed.
    """
    require_matplotlib()
    from matplotlib.figure import Figure

    top = result.revised.sort("_size", descending=True).head(CHART_ROWS).reverse()
    labels = [f"{r['series_id']} {r['year']} {r['period']}" for r in top.iter_rows(named=True)]
    changes = [float(c) for c in top["change"].to_list()]
    figure = Figure(figsize=(8, 1.5 + 0.3 * max(1, len(labels))))
    axes = figure.add_subplot()
    axes.barh(labels, changes, color=["#b2182b" if c < 0 else "#2166ac" for c in changes])
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_xlabel("change (new - old)")
    axes.set_title(
        f"Largest revisions of {result.file}, {result.from_release} -> {result.to_release}",
        fontsize=10,
    )
    axes.tick_params(axis="y", labelsize=7)
    figure.tight_layout()
    return _png(figure)


def write_revisions(result: Revisions, directory: str | Path) -> list[Path]:
    """Write ``revisions.csv``, ``summary.csv`` and ``largest-revisions.png`` into ``directory``.

    Raises:
        ConfigError: matplotlib is not installed (checked before anything is written).
        RqError: the directory or a file cannot be written.
    """
    require_matplotlib()
    directory = Path(directory)
    paths = [
        directory / "revisions.csv",
        directory / "summary.csv",
        directory / "largest-revisions.png",
    ]
    try:
        directory.mkdir(parents=True, exist_ok=True)
        paths[0].write_text(revisions_csv(result))
        result.summary.write_csv(paths[1])
        paths[2].write_bytes(revisions_chart(result))
    except OSError as exc:
        raise RqError(f"cannot write into {directory}: {exc.strerror or exc}") from exc
    return paths


def revisions_text(result: Revisions, fmt: str) -> str:
    """The comparison in a text format of ``rq revisions``: ``json``, ``csv`` or ``markdown``."""
    if fmt == "json":
        return revisions_json(result)
    return revisions_csv(result) if fmt == "csv" else tables_markdown(revisions_grids(result))


def tables_as_of_doc(release: str, written: Sequence[str]) -> dict[str, object]:
    """The ``rq tables --as-of`` JSON document: the release and the tables written."""
    return {"release": release, "written": list(written)}


def tables_as_of_summary(release: str, written: Sequence[str]) -> str:
    """``rq tables --as-of`` for people: the release, then each table written."""
    return "\n".join([f"tables of release {release}:", *(f"  {url}" for url in written)])
