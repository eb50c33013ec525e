"""Structure-aware mutations of JSON messages, shared by the atheris harness (as its custom
mutator) and usable from tests.

Byte-level mutation of JSON mostly breaks the syntax, so the decoders' field handling is
rarely reached; these mutations keep the document valid JSON and change what a careless
decoder trusts: a field's type, its size, its presence, its nesting.
"""

from __future__ import annotations

import copy
import json
import random
import re
from typing import Any

# Values a field may be replaced with: wrong types, edge numbers (huge integers, beyond
# float range, non-finite), odd strings (lone surrogate, control characters, very long),
# nesting.
INTERESTING: tuple[Any, ...] = (
    None, True, False, 0, -1, 1, 2**31, 2**53 + 1, 2**63, 2**64, -(2**64), 10**30, 10**400,
    0.5, -0.0, 1e308, 1e-320, float("nan"), float("inf"), float("-inf"),
    "", " ", "x", "ecg", "vtach", "ack", "snooze", "\ud800", "\x00", "\n", "é" * 40, "x" * 300,
    [], [0], [None], ["1.5"], [[1.0, 2.0]], [True], {}, {"a": 1}, [[[[[]]]]],
)


def _paths(obj: Any, prefix: tuple[Any, ...] = (), depth: int = 0) -> list[tuple[Any, ...]]:
    out = [prefix]
    if depth > 8:
        return out
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.extend(_paths(v, (*prefix, k), depth + 1))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:8]):
            out.extend(_paths(v, (*prefix, i), depth + 1))
    return out


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        obj = obj[p]
    return obj


_DEEP = "\x00deep-nesting:"
_DIGITS = "\x00digits:"
# The markers as json.dumps writes them, with their size (and whatever a mutation appended).
_DEEP_TEXT = re.compile('"' + re.escape(json.dumps(_DEEP)[1:-1]) + r'(\d+)[^"]*"')
_DIGITS_TEXT = re.compile('"' + re.escape(json.dumps(_DIGITS)[1:-1]) + r'(\d+)[^"]*"')


def _nest(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = [value]
    return value


def mutate_json(obj: Any, rng: random.Random) -> Any:
    """One structural mutation of a parsed JSON document (a new copy)."""
    obj = copy.deepcopy(obj)
    paths = _paths(obj)
    path = rng.choice(paths)
    if not path:
        return rng.choice(INTERESTING) if rng.random() < 0.2 else obj
    parent, key = _get(obj, path[:-1]), path[-1]
    r = rng.random()
    if r < 0.5:
        parent[key] = copy.deepcopy(rng.choice(INTERESTING))
    elif r < 0.6:
        parent[key] = copy.deepcopy(_get(obj, rng.choice(paths)))  # another subtree
    elif r < 0.7 and isinstance(parent, dict):
        del parent[key]
    elif r < 0.8 and isinstance(parent, dict):
        parent[key + "_" if isinstance(key, str) else key] = parent.pop(key)  # renamed
    elif r < 0.87:
        value = parent[key]
        if isinstance(value, int | float) and not isinstance(value, bool):
            parent[key] = rng.choice([value * 10**rng.randint(1, 40), -value, value + 0.5, int(value) if
                                      value == value and abs(value) != float("inf") else 0])
        elif isinstance(value, list):
            parent[key] = value * rng.randint(2, 50) if rng.random() < 0.5 else value[: rng.randint(0, len(value))]
        elif isinstance(value, str):
            parent[key] = value * rng.randint(2, 30)
    elif r < 0.95:
        depth = rng.choice([2, 30, 5000])
        # Deeper than json.dumps can write (and than json.loads can read): spliced in as
        # text by mutate_bytes; so is an integer beyond Python's 4,300-digit limit.
        if depth > 500:
            parent[key] = f"{_DEEP}{depth}"
        elif rng.random() < 0.3:
            parent[key] = f"{_DIGITS}{rng.choice([20, 400, 5000])}"
        else:
            parent[key] = _nest(parent[key], depth)
    elif isinstance(parent, dict):
        parent[rng.choice(["extra", "care_action", "tick", "schema_version", "samples"])] = rng.choice(INTERESTING)
    return obj


def mutate_bytes(data: bytes, rng: random.Random, max_size: int) -> bytes | None:
    """``data`` parsed, mutated 1-3 times and serialised; None when it is not JSON."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        return None
    try:
        for _ in range(rng.randint(1, 3)):
            obj = mutate_json(obj, rng)
        text = json.dumps(obj)
    except (ValueError, OverflowError, RecursionError):
        return None
    text = _DEEP_TEXT.sub(lambda m: "[" * int(m.group(1)) + "]" * int(m.group(1)), text)
    text = _DIGITS_TEXT.sub(lambda m: "7" * int(m.group(1)), text)
    out = text.encode()
    return out if len(out) <= max_size else None
