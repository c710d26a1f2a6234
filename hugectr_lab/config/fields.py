"""Table-driven JSON fields: validators, and dataclass fields that carry their JSON key and validator.

A spec dataclass declares ``num_output: int = key(positive_int)``; ``read_fields`` then reads, checks and
normalises every such field from a JSON object (lists become tuples, numbers become floats), and
``write_fields`` turns a spec back into HugeCTR-style JSON. Fields declared without ``key`` are handled
by hand in the parser that owns them.

A validator is a callable ``value -> normalised value`` that raises ``Invalid`` with the rest of the
sentence ("must be ..., got ...") and, for containers, the sub-path of the bad item.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Collection, Mapping
from typing import Any

from .errors import Loc

REQUIRED = dataclasses.MISSING
Validator = Callable[[Any], Any]


class Invalid(Exception):
    """Raised by a validator: ``detail`` completes the sentence, ``at`` is the sub-path (``[3]``) of a bad item."""

    def __init__(self, detail: str, at: str = ""):
        super().__init__(detail)
        self.detail = detail
        self.at = at


def got(value: Any) -> str:
    """The value as JSON would spell it (strings in double quotes, ``true``), for error messages."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def expected(what: str, value: Any, at: str = "") -> Invalid:
    return Invalid(f"must be {what}, got {got(value)}", at)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple))


# ---- validators ---------------------------------------------------------------------------------

def int_range(lo: int, hi: int | None = None, what: str | None = None) -> Validator:
    what = what or (f"an integer in {lo}..{hi}" if hi is not None else f"an integer >= {lo}")

    def check(value):
        if is_int(value) and value >= lo and (hi is None or value <= hi):
            return value
        raise expected(what, value)
    return check


positive_int = int_range(1, what="a positive integer")
non_negative_int = int_range(0, what="a non-negative integer")


def number(lo: float = -math.inf, hi: float = math.inf, *, lo_open: bool = False, hi_open: bool = False,
           what: str | None = None) -> Validator:
    """A finite JSON number in the interval, stored as float."""
    if what is None:
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        what = f"a number in {left}{lo:g}, {hi:g}{right}" if math.isfinite(lo) or math.isfinite(hi) else "a number"

    def check(value):
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
              and (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi))
        if ok:
            return float(value)
        raise expected(what, value)
    return check


any_number = number()
positive_number = number(0.0, lo_open=True, what="a positive number")
non_negative_number = number(0.0, what="a non-negative number")


def boolean(value):
    if isinstance(value, bool):
        return value
    raise expected("true or false", value)


def string(value):
    if isinstance(value, str):
        return value
    raise expected("a string", value)


def nonempty_string(value):
    """A tensor, layer or file name: a non-empty string."""
    if isinstance(value, str) and value:
        return value
    raise expected("a non-empty string", value)


def one_of(*choices: Any, hint: str = "") -> Validator:
    """Exactly one of the choices, type included (so ``true`` is not ``1`` and ``128.0`` is not ``128``)."""
    what = "one of " + ", ".join(got(c) for c in choices) + hint

    def check(value):
        if any(type(value) is type(c) and value == c for c in choices):
            return value
        raise expected(what, value)
    return check


def json_object(value):
    if isinstance(value, Mapping):
        return value
    raise expected("an object", value)


def list_of(item: Validator, *, min_len: int = 0, max_len: int | None = None, what: str = "a list") -> Validator:
    """A JSON array (a tuple is accepted from Python dicts), stored as a tuple of validated items."""
    size = (f" of {min_len}..{max_len} items" if max_len is not None
            else f" of at least {min_len} item{'s' * (min_len != 1)}" if min_len else "")

    def check(value):
        if not is_list(value) or not min_len <= len(value) <= (max_len if max_len is not None else len(value)):
            raise expected(what + size, value)
        out = []
        for i, v in enumerate(value):
            try:
                out.append(item(v))
            except Invalid as e:
                raise Invalid(e.detail, f"[{i}]{e.at}") from None
        return tuple(out)
    return check


def str_or_list(item: Validator = string) -> Validator:
    """HugeCTR's "string or list of strings" keys (``sparse_model_file``), stored as a tuple."""
    as_list = list_of(item, what="a string or a list of strings")

    def check(value):
        return (item(value),) if isinstance(value, str) else as_list(value)
    return check


# ---- dataclass fields that name their JSON key --------------------------------------------------

def key(check: Validator, *, default: Any = REQUIRED, json: str | None = None,
        dump: Callable[[Any], Any] | None = None) -> Any:
    """A dataclass field read from JSON key ``json`` (default: the field name) with validator ``check``.

    ``dump`` converts the stored value back to JSON when it is not the plain JSON form (e.g. combiner).
    """
    return dataclasses.field(default=default, metadata={"check": check, "json": json, "dump": dump})


def json_fields(cls: type, names: Collection[str] | None = None) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if "check" in f.metadata and (names is None or f.name in names)]


def json_key(f: dataclasses.Field) -> str:
    return f.metadata["json"] or f.name


def validate(value: Any, check: Validator, loc: Loc) -> Any:
    try:
        return check(value)
    except Invalid as e:
        loc.child(e.at).fail(e.detail)


def read_value(obj: Mapping, loc: Loc, jkey: str, check: Validator, default: Any = REQUIRED) -> Any:
    if jkey not in obj:
        if default is REQUIRED:
            loc.child(jkey).fail("is required")
        return default
    return validate(obj[jkey], check, loc.child(jkey))


def read_fields(cls: type, obj: Mapping, loc: Loc, *, names: Collection[str] | None = None,
                required: Collection[str] = ()) -> dict[str, Any]:
    """Read the keyed fields of ``cls`` (or only ``names``) from ``obj``; ``required`` overrides defaults."""
    return {f.name: read_value(obj, loc, json_key(f), f.metadata["check"],
                               REQUIRED if f.name in required else f.default)
            for f in json_fields(cls, names)}


def plain(value: Any) -> Any:
    """Tuples back to JSON lists, recursively."""
    return [plain(v) for v in value] if isinstance(value, tuple) else value


def write_fields(spec: Any, *, names: Collection[str] | None = None, always: Collection[str] = ()) -> dict:
    """The keyed fields of ``spec`` as JSON, leaving out None and values equal to an optional field's default."""
    out = {}
    for f in json_fields(type(spec), names):
        value = getattr(spec, f.name)
        if value is None or (f.default is not REQUIRED and value == f.default and f.name not in always):
            continue
        out[json_key(f)] = f.metadata["dump"](value) if f.metadata["dump"] else plain(value)
    return out


def keys_of(cls: type, names: Collection[str] | None = None) -> set[str]:
    return {json_key(f) for f in json_fields(cls, names)}


def warn_unknown(obj: Mapping, loc: Loc, known: Collection[str]) -> None:
    """HugeCTR ignores keys it does not read; we do too, but say so (typos in optional keys hide here)."""
    for k in obj:
        if k not in known:
            loc.child(k).warn("unknown key, ignored")


def read_object(cls: type, value: Any, loc: Loc, *, required: Collection[str] = (), known: Collection[str] = ()):
    """An instance of ``cls`` from a JSON object holding its keyed fields (``known``: other keys to accept)."""
    obj = validate(value, json_object, loc)
    spec = cls(**read_fields(cls, obj, loc, required=required))
    warn_unknown(obj, loc, keys_of(cls) | set(known))
    return spec


def tensor_names(lo: int, hi: int | None) -> Validator:
    """A layer's ``bottom`` or ``top``: one name or a list of lo..hi names (hi None: no limit), stored as a tuple."""
    what = ("a tensor name" if lo == hi == 1 else f"a list of {lo}..{hi} tensor names" if hi
            else f"a list of at least {lo} tensor names")
    each = list_of(nonempty_string)

    def check(value):
        names = [value] if isinstance(value, str) else value
        if not is_list(names) or not lo <= len(names) <= (hi or len(names)):
            raise expected(what, value)
        return each(names)
    return check
