"""Decoding untrusted message bytes: JSON objects and field checks against a record's types.

Every topic the worker reads can be written by any producer that reaches the broker, so
each message decoder turns *any* bytes into either a valid record or its own documented
exception (a ``ValueError`` subclass whose text is the dead-letter detail), never into a
``TypeError``, ``KeyError``, ``RecursionError`` or ``OverflowError`` from deep inside the
worker. Two things make that hard to get right by hand and are done once here:

* :func:`load_json_object` — ``json.loads`` raises more than ``JSONDecodeError``: a
  ``RecursionError`` for deeply nested input (``[[[[...``), a plain ``ValueError`` for an
  integer of more than 4,300 digits (Python's int-conversion limit), a
  ``UnicodeDecodeError`` for bytes that are not UTF-8/16/32.
* :func:`check_fields` — a record decoded with ``cls(**obj)`` accepts any JSON value in
  any field; a string where a number belongs then fails later, in the aggregator, as a
  ``TypeError`` on a comparison. The check follows the dataclass's own annotations
  (``float | None``, ``dict[str, int]``, ``tuple[TrendFinding, ...]``, nested records),
  so the record declares its contract once.

Pure (no Kafka, no Redis).
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any

# Epoch-millisecond fields beyond 2**53 cannot be represented exactly by a double (Lua in
# Redis, JavaScript dashboards): no real clock gets there.
MAX_EPOCH_MS = 2**53
INT_LIMIT = 2**63
FLOAT_INT_LIMIT = int(sys.float_info.max)


class NotJSON(ValueError):
    """The bytes are not one JSON document a decoder may use (see :func:`parse_json`)."""


def parse_json(data: bytes | bytearray | str) -> Any:
    """``json.loads`` that raises only :class:`NotJSON`, and refuses strings holding lone
    UTF-16 surrogates (``"\\ud800"`` is valid JSON): they cannot be encoded back to UTF-8,
    so a patient id carrying one would fail later as a Kafka key or in Redis."""
    if not isinstance(data, bytes | bytearray | str):
        raise NotJSON(f"expected bytes, got {type(data).__name__}")
    try:
        obj = json.loads(data)
    except RecursionError:
        raise NotJSON("nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, the int digit limit
        raise NotJSON(str(exc)[:120]) from None
    if _MAY_HOLD_SURROGATE.search(data if isinstance(data, bytes | bytearray) else data.encode(errors="surrogatepass")):
        _reject_surrogates(obj)
    return obj


# Lone surrogates come only from \\u escapes in the text (UTF-8 cannot carry them; a str
# argument is checked encoded): the walk below runs only when one may be there.
_MAY_HOLD_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def _reject_surrogates(obj: Any) -> None:
    stack = [obj]  # iterative: the document may be nested as deep as the parser allows
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            _encodable(item)
        elif isinstance(item, dict):
            for key, value in item.items():
                _encodable(key)
                if not isinstance(value, int | float):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(v for v in item if not isinstance(v, int | float))


def _encodable(text: str) -> None:
    try:
        text.encode()
    except UnicodeEncodeError:
        raise NotJSON(f"string with a lone surrogate: {text[:40]!r}") from None


def load_json_object(data: bytes | bytearray | str, error: type[ValueError], what: str) -> dict[str, Any]:
    """Parse ``data`` as one JSON object; any failure raises ``error`` with a clear reason."""
    try:
        obj = parse_json(data)
    except NotJSON as exc:
        raise error(f"{what} is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise error(f"{what} must be a JSON object, got {type(obj).__name__}")
    return obj


Checker = Callable[[Any, str], bool]


def check_fields(cls: type, obj: Any, error: type[ValueError], path: str = "") -> None:
    """Raise ``error`` unless ``obj`` is a dict whose fields known to dataclass ``cls`` have
    the annotated types and whose required fields are present. Unknown fields are left to
    the caller (readers ignore fields added by newer writers). Floats may be non-finite:
    what the worker itself writes (``NaN`` is valid JSON for Python) must stay readable.
    Integers must fit 64 bits, numbers a float."""
    try:
        _record_checker(cls)(obj, path)
    except _Mismatch as exc:
        raise error(str(exc)) from None


class _Mismatch(Exception):
    pass


@cache
def _record_checker(cls: type) -> Checker:
    """A function checking a dict against ``cls``; compiled once per record type (the
    aggregator checks every finding it reads)."""
    hints = typing.get_type_hints(cls)
    required = frozenset(
        f.name for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    checks = [(name, _compile(hint), hint) for name, hint in hints.items()]

    def check(obj: Any, path: str) -> bool:
        if not isinstance(obj, dict):
            raise _Mismatch(f"{path or cls.__name__} must be an object, got {type(obj).__name__}")
        if not required <= obj.keys():
            missing = ", ".join(sorted(required - obj.keys()))
            raise _Mismatch(f"{path or cls.__name__}: missing field(s) {missing}")
        for name, checker, hint in checks:
            if name in obj:
                inner = f"{path}.{name}" if path else name
                value = obj[name]
                if not checker(value, inner):
                    shown = repr(value)
                    raise _Mismatch(f"{inner} must be {_describe(hint)}, got {shown[:60]}"
                                    f"{'...' if len(shown) > 60 else ''}")
        return True

    return check


def _is_int(value: Any, path: str) -> bool:
    # int64, as every integer the worker writes: Python's are unbounded, JSON's too.
    return type(value) is int and -INT_LIMIT <= value < INT_LIMIT


def _is_float(value: Any, path: str) -> bool:
    # An integer beyond float range passes for a number until arithmetic meets it.
    t = type(value)
    return t is float or (t is int and -FLOAT_INT_LIMIT <= value <= FLOAT_INT_LIMIT)


_SIMPLE: dict[Any, Checker] = {
    bool: lambda v, p: type(v) is bool,
    int: _is_int,
    float: _is_float,
    str: lambda v, p: type(v) is str,
    type(None): lambda v, p: v is None,
    Any: lambda v, p: True,
}


def _compile(hint: Any) -> Checker:
    simple = _SIMPLE.get(hint)
    if simple is not None:
        return simple
    if dataclasses.is_dataclass(hint):
        return _record_checker(hint)  # type: ignore[arg-type]  # raises with the inner path
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        # None first: a nested record's checker raises (with the inner path) on a mismatch.
        none_ok = type(None) in args
        branches = [_compile(a) for a in args if a is not type(None)]
        if len(branches) == 1:  # the common ``X | None``
            only = branches[0]
            return lambda v, p: (none_ok and v is None) or only(v, p)
        return lambda v, p: (none_ok and v is None) or any(b(v, p) for b in branches)
    if origin is dict:
        key_check, value_check = _compile(args[0]), _compile(args[1])
        return lambda v, p: type(v) is dict and all(
            key_check(k, p) and value_check(x, f"{p}[{k!r}]") for k, x in v.items())
    if origin in (tuple, list) and (origin is list or (len(args) == 2 and args[1] is Ellipsis)):
        item = _compile(args[0])
        return lambda v, p: isinstance(v, list | tuple) and all(item(x, f"{p}[{i}]") for i, x in enumerate(v))
    if origin is tuple:
        items = [_compile(a) for a in args]
        return lambda v, p: isinstance(v, list | tuple) and len(v) == len(items) and all(
            c(x, f"{p}[{i}]") for i, (c, x) in enumerate(zip(items, v, strict=True)))
    raise TypeError(f"no wire check for {hint!r}")


def _describe(hint: Any) -> str:
    if hint is type(None):
        return "null"
    if isinstance(hint, type):
        return {bool: "true/false", int: "a 64-bit integer", float: "a number", str: "a string"}.get(
            hint, f"an object ({hint.__name__})")
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin is dict:
        return f"an object of {_describe(typing.get_args(hint)[1])}"
    if origin in (tuple, list):
        return f"a list of {_describe(typing.get_args(hint)[0])}"
    return str(hint)


def check_epoch_ms(value: int, name: str, error: type[ValueError], *, lo: int = 0, hi: int = MAX_EPOCH_MS) -> None:
    """An integer epoch-milliseconds field within [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{name} must be an integer (epoch ms), got {value!r:.60}")
    if not lo <= value <= hi:
        raise error(f"{name} {value} is out of range [{lo}, {hi}]")
