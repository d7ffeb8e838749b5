"""Random shapes of JSON documents, for the fuzz tests of what rq parses from others.

Plain ``random.Random(seed)`` loops: every run sees the same cases, and a failure names its
case number, so it replays.
"""

from __future__ import annotations

import json
import random
from typing import Any

# Strings a parser of names and prefixes may trip on: paths, separators, control characters,
# a lone surrogate, globs, padding, the empty string and a huge one.
NASTY_STRINGS = (
    "",
    " ",
    ".",
    "..",
    "../x",
    "/",
    "a/b",
    "a\\b",
    "\x00",
    "\n",
    "\ud800",
    "*",
    "[",
    "?",
    "all",
    "ALL",
    "pr,cu",
    " pr",
    "pr ",
    "pr.",
    "pr.data.0.Current",
    "cu.data.1.AllItems",
    "http://127.0.0.1:9/pub/time.series/",
    "x" * 100_000,
    "é" * 1000,
)


def random_scalar(rng: random.Random) -> Any:
    """A JSON scalar of any kind, nasty strings and out-of-range numbers included."""
    kind = rng.randrange(8)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 1, 2**63, -(2**70), rng.randrange(-1000, 1000)])
    if kind == 3:
        return rng.choice([0.5, -0.0, 1e308, float("nan"), float("inf")])
    if kind == 4:
        return rng.choice(NASTY_STRINGS)
    return "".join(chr(rng.randrange(0x20, 0x250)) for _ in range(rng.randrange(0, 12)))


def random_json(rng: random.Random, depth: int = 3) -> Any:
    """A random JSON value: scalars, lists and objects nested up to ``depth``."""
    if depth <= 0 or rng.random() < 0.4:
        return random_scalar(rng)
    if rng.random() < 0.5:
        return [random_json(rng, depth - 1) for _ in range(rng.randrange(4))]
    return {
        str(random_scalar(rng))[:20]: random_json(rng, depth - 1) for _ in range(rng.randrange(4))
    }


def mutated(rng: random.Random, doc: dict[str, Any], *, depth: int = 0) -> Any:
    """``doc`` (a valid document) with a few random changes: a key dropped, a key added, a
    value of another type, a nested value changed the same way."""
    out: dict[str, Any] = dict(doc)
    for _ in range(rng.randrange(1, 4)):
        move = rng.randrange(5)
        if move == 0 and out:
            del out[rng.choice(sorted(out))]
        elif move == 1:
            out[rng.choice([*sorted(doc), "extra", "", "__proto__"])] = random_json(rng)
        elif move == 2 and out:
            out[rng.choice(sorted(out))] = random_json(rng)
        elif move == 3 and out:
            key = rng.choice(sorted(out))
            if isinstance(out[key], dict) and depth < 3:
                out[key] = mutated(rng, out[key], depth=depth + 1)
            elif isinstance(out[key], list) and out[key]:
                items = list(out[key])
                items[rng.randrange(len(items))] = random_json(rng)
                out[key] = items
        elif move == 4:
            return random_json(rng)
    return out


def random_body(rng: random.Random, valid: dict[str, Any]) -> str | bytes:
    """A message or object body: mostly a mutated ``valid`` document, else no JSON at all,
    cut short, nested thousands deep, or random bytes."""
    kind = rng.randrange(10)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
    if kind == 1:
        text = json.dumps(valid)
        return text[: rng.randrange(len(text))]
    if kind == 2:
        n = rng.choice([100, 5_000, 200_000])
        return "[" * n + "]" * n if rng.random() < 0.5 else '{"a":' * n + "1" + "}" * n
    if kind == 3:
        return rng.choice(["", "null", "1" * 5000, "NaN", '"survey"', "[]", "{}"])
    return json.dumps(mutated(rng, valid))
