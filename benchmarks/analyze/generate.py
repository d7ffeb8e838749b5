"""Write a BLS-format ``pr.data.0.Current`` that is N times the real one.

The real file (282 series, 1995 to the current quarter) is repeated N times; each copy gets its
own series ids (the real id plus a four-digit copy number, still inside BLS's 17-character padded
field) and its values shifted by a small exact amount per copy, so the copies are distinct series
with distinct sums. Everything else — padding, tabs, CRLF line endings, footnote codes — is the
real file's, byte for byte, so the parser sees what it sees in production.

Usage:
    python benchmarks/analyze/generate.py --times 1000 --out benchmarks/work/pr.data.x1000
"""

from __future__ import annotations

import argparse
import gzip
import sys
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The real file of the 2026-08-06 release, shipped gzipped with the package.
DEFAULT_SOURCE = (
    REPO / "src" / "rearcquest" / "_data" / "bls" / "pr" / "2026-08-06" / "pr.data.0.Current.gz"
)
# The copy number sits in the series id field: 11 characters of id, 4 of copy, 2 of padding.
_ID_FIELD = 17
_COPY = b"@@@@"


def _shift(line: bytes, tenths: int) -> bytes:
    """Add ``tenths``/10 to the value (fourth field) of one data line, keeping its width."""
    fields = line.split(b"\t")
    text = fields[3].strip().decode()
    decimals = max(len(text.partition(".")[2]), 1)
    shifted = Decimal(text) + Decimal(tenths) / 10
    fields[3] = f"{shifted:.{decimals}f}".encode().rjust(len(fields[3]))
    return b"\t".join(fields)


def read_source(source: Path) -> bytes:
    """The bytes of a real file, plain or gzipped (a name ending in ``.gz``)."""
    raw = source.read_bytes()
    return gzip.decompress(raw) if source.suffix == ".gz" else raw


def _templates(source: Path, variants: int) -> tuple[bytes, list[bytes]]:
    """Return the header and ``variants`` copies of the body with a copy-number placeholder."""
    raw = read_source(source)
    header, _, body = raw.partition(b"\n")
    lines = body.splitlines(keepends=True)
    blocks = []
    for variant in range(variants):
        out = []
        for line in lines:
            ident, tab, rest = line.partition(b"\t")
            ident = ident.rstrip()
            assert len(ident) + len(_COPY) <= _ID_FIELD, ident
            field = (ident + _COPY).ljust(_ID_FIELD)
            data = tab + rest
            if variant:
                data = _shift(data, variant)
            out.append(field + data)
        blocks.append(b"".join(out))
    return header + b"\n", blocks


def generate(out: Path, times: int, *, source: Path = DEFAULT_SOURCE, variants: int = 7) -> int:
    """Write ``times`` copies of ``source`` to ``out``; return the number of data rows.

    Args:
        out: the file to write.
        times: how many copies of the real file.
        source: a real BLS ``pr.data.0.Current``, plain or gzipped.
        variants: how many distinct value shifts to cycle through.

    Returns:
        The number of data rows written.
    """
    header, blocks = _templates(source, variants)
    rows_per_copy = blocks[0].count(b"\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as fh:
        fh.write(header)
        for copy in range(times):
            fh.write(blocks[copy % variants].replace(_COPY, b"%04d" % copy))
    return rows_per_copy * times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", type=int, required=True, help="copies of the real file")
    parser.add_argument("--out", type=Path, required=True, help="file to write")
    parser.add_argument(
        "--source", type=Path, default=DEFAULT_SOURCE, help="real BLS file (.gz too)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.times <= 9999:
        parser.error("--times must be between 1 and 9999 (four-digit copy numbers)")
    rows = generate(args.out, args.times, source=args.source)
    size = args.out.stat().st_size
    print(f"wrote {args.out}: {rows:,} rows, {size / 1e6:,.1f} MB", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
