"""Strict, fast parsing of protobuf canonical-JSON request bodies.

Why not ``json_format.ParseDict``? It defines what is valid, but it builds real protobuf
messages and costs ~45 µs per point, which caps ingest far below our target. This module
compiles each message *descriptor* once into a tree of small converter closures that apply the
same acceptance rules as ``ParseDict(..., ignore_unknown_fields=False)`` and return plain
Python values (dicts keyed by proto field names, timestamps as integer nanoseconds).
Because the closures are built from the descriptors, every field of the schema is covered; the
equivalence with ``ParseDict`` is proven by ``tests/server/test_validate.py`` on randomized
valid bodies and a corpus of malformed ones.

Rules mirrored from ``google/protobuf/json_format.py`` (including its quirks):
- a field may be named by its JSON name or its proto name; unknown names are errors;
- ``null`` clears a field (it is skipped); ``null`` inside a list is an error;
- two members of one oneof are an error;
- integers: int (not bool), integral float, or a str without spaces that ``int()`` or, failing
  that, ``float()`` reads as an integer, in range;
- doubles: any finite number, bool, or a str ``float()`` accepts, plus "NaN", "Infinity",
  "-Infinity" (but not "nan"); non-finite JSON numbers are errors;
- enums: a value name, or an integer (unknown numbers allowed: proto3 enums are open);
- Timestamp: RFC 3339 with up to 9 fractional digits and an offset.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from google.protobuf import descriptor as _d
from google.protobuf.timestamp_pb2 import Timestamp

from .columnar import read_points

__all__ = ["ValidationError", "compile_message", "parse_timestamp_ns"]

# Repeated points read by columns when they come in the usual form (see .columnar): is RL.
_COLUMNAR = {"metrana_protobuf.ingestion.v1.types.Point": False,
             "metrana_protobuf.ingestion.v1.types.CompoundPoint": True}


class ValidationError(ValueError):
    """A body does not match the schema; the message names the offending path.

    The path is assembled while the error propagates (each enclosing message adds its field
    name), so valid bodies pay nothing for error reporting.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []

    def __str__(self) -> str:
        where = "".join(self.path)
        return f"{where}: {self.reason}" if where else self.reason


def _fail(reason: str) -> ValidationError:
    return ValidationError(reason)


Converter = Callable[[Any], Any]

_INT_RANGES = {
    _d.FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    _d.FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _d.FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _d.FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    _d.FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
    _d.FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    _d.FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _d.FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _d.FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    _d.FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
}
_FLOAT32_MAX = 3.4028234663852886e38
_UNPAIRED_SURROGATE = re.compile(
    "[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]"
)
_CANONICAL_PREFIX = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\Z")
_SECONDS_CACHE: dict[str, int] = {}


def _make_int(lo: int, hi: int) -> Converter:
    def convert(value: Any) -> int:
        kind = type(value)
        if kind is str:
            if " " in value:
                raise _fail(f"couldn't parse integer {value!r}")
            try:
                number = int(value)
            except ValueError:
                # json_format then tries an integer-valued float spelling ("1e3", "2.0").
                try:
                    as_float = float(value)
                except ValueError:
                    raise _fail(f"couldn't parse integer {value!r}") from None
                if not as_float.is_integer():
                    raise _fail(f"non-integer string {value!r}") from None
                number = int(as_float)
        elif kind is int:
            number = value
        elif kind is float:
            if not value.is_integer():
                raise _fail(f"couldn't parse integer {value!r}")
            number = int(value)
        elif kind is bool:
            raise _fail("bool is not acceptable for an integer field")
        else:
            raise _fail(f"expected an integer, got {type(value).__name__}")
        if not lo <= number <= hi:
            raise _fail(f"integer {number} out of range")
        return number

    return convert


def _make_float(is_float32: bool) -> Converter:
    def convert(value: Any) -> float:
        kind = type(value)
        if kind is float:
            if value - value != 0.0:  # NaN or ±inf
                raise _fail('non-finite JSON number; use "NaN", "Infinity" or "-Infinity"')
            if is_float32 and not -_FLOAT32_MAX <= value <= _FLOAT32_MAX:
                raise _fail("float value out of range")
            return value  # type: ignore[no-any-return]
        if kind is int or kind is bool:
            return float(value)
        if kind is str:
            if value == "nan":
                raise _fail('couldn\'t parse "nan", use "NaN"')
            try:
                return float(value)
            except ValueError:
                if value == "NaN":
                    return math.nan
                if value == "Infinity":
                    return math.inf
                if value == "-Infinity":
                    return -math.inf
                raise _fail(f"couldn't parse float {value!r}") from None
        raise _fail(f"expected a number, got {type(value).__name__}")

    return convert


def _convert_bool(value: Any) -> bool:
    if type(value) is not bool:
        raise _fail("expected true or false without quotes")
    return bool(value)


def _convert_str(value: Any) -> str:
    if type(value) is not str:
        raise _fail(f"expected a string, got {type(value).__name__}")
    if _UNPAIRED_SURROGATE.search(value):
        raise _fail("unpaired surrogate")
    return value


def _make_enum(enum: _d.EnumDescriptor) -> Converter:
    by_name = {v.name: v.number for v in enum.values}
    closed = bool(getattr(enum, "is_closed", False))

    def convert(value: Any) -> int:
        if type(value) is str and value in by_name:
            return int(by_name[value])
        try:
            number = int(value)
        except (ValueError, TypeError):
            raise _fail(f"invalid value {value!r} for enum {enum.full_name}") from None
        if closed and number not in enum.values_by_number:
            raise _fail(f"invalid value {value!r} for enum {enum.full_name}")
        if not -(2**31) <= number < 2**31:
            raise _fail(f"enum value {number} out of range")
        return number

    return convert


def parse_timestamp_ns(value: Any) -> int:
    """RFC 3339 string → integer nanoseconds since the epoch, exactly as protobuf parses it.

    The canonical ``YYYY-MM-DDTHH:MM:SS[.fraction]Z`` form takes a fast path that caches the
    whole-seconds prefix (points of one batch share it); anything else goes through protobuf's
    own parser.
    """
    if type(value) is str and value[-1:] == "Z":
        seconds = _SECONDS_CACHE.get(value[:19])
        if seconds is None and _CANONICAL_PREFIX.match(value[:19]):
            seconds = _slow_timestamp_ns(value[:19] + "Z") // 1_000_000_000
            if len(_SECONDS_CACHE) > 100_000:
                _SECONDS_CACHE.clear()
            _SECONDS_CACHE[value[:19]] = seconds
        if seconds is not None:
            frac = value[19:-1]
            if not frac:
                return seconds * 1_000_000_000
            digits = frac[1:]
            if frac[0] == "." and 0 < len(digits) <= 9 and digits.isascii() and digits.isdigit():
                return seconds * 1_000_000_000 + round(float("0" + frac) * 1e9)
    return _slow_timestamp_ns(value)


def _slow_timestamp_ns(value: Any) -> int:
    ts = Timestamp()
    try:
        ts.FromJsonString(value)
    except (ValueError, TypeError) as exc:
        raise _fail(str(exc)) from None
    return int(ts.seconds) * 1_000_000_000 + int(ts.nanos)


def _scalar_converter(field: _d.FieldDescriptor) -> Converter:
    ftype = field.type
    if ftype in _INT_RANGES:
        return _make_int(*_INT_RANGES[ftype])
    if ftype == _d.FieldDescriptor.TYPE_DOUBLE:
        return _make_float(False)
    if ftype == _d.FieldDescriptor.TYPE_FLOAT:
        return _make_float(True)
    if ftype == _d.FieldDescriptor.TYPE_BOOL:
        return _convert_bool
    if ftype == _d.FieldDescriptor.TYPE_STRING:
        return _convert_str
    if ftype == _d.FieldDescriptor.TYPE_ENUM:
        return _make_enum(field.enum_type)
    raise NotImplementedError(f"field type {ftype} of {field.full_name}")


def _map_key_converter(field: _d.FieldDescriptor) -> Converter:
    if field.type == _d.FieldDescriptor.TYPE_BOOL:

        def convert(value: Any) -> bool:
            if value == "true":
                return True
            if value == "false":
                return False
            raise _fail('expected "true" or "false"')

        return convert
    return _scalar_converter(field)


def _is_repeated(field: _d.FieldDescriptor) -> bool:
    flag = getattr(field, "is_repeated", None)  # protobuf >= 5.29; ``label`` is deprecated there
    if flag is None:
        return bool(field.label == _d.FieldDescriptor.LABEL_REPEATED)
    return bool(flag)


def compile_message(desc: _d.Descriptor) -> Callable[[Any, str], Any]:
    """Return ``parse(body, name)``: JSON value → dict keyed by proto field names.

    Raises ValidationError whose message starts with the path of the offending value
    (``name.runUpdates[0].series[1].points[7].step: ...``).
    """
    convert = _Compiler().message(desc)

    def parse(body: Any, name: str) -> Any:
        try:
            return convert(body)
        except ValidationError as exc:
            exc.path.insert(0, name)
            raise

    return parse


class _Compiler:
    def __init__(self) -> None:
        self._done: dict[str, Converter] = {}

    def message(self, desc: _d.Descriptor) -> Converter:
        if desc.full_name == "google.protobuf.Timestamp":
            return parse_timestamp_ns
        if desc.full_name in self._done:
            return self._done[desc.full_name]
        fields: dict[str, tuple[str, str | None, Converter]] = {}

        def convert(value: Any) -> dict[str, Any]:
            if type(value) is not dict:
                # json_format iterates the value's keys; an empty list or string has none and
                # yields an empty message, anything else fails.
                if value == [] or value == "":
                    return {}
                raise _fail(f"expected an object for {desc.full_name}")
            out: dict[str, Any] = {}
            first_oneof: str | None = None  # most messages have one oneof: no set per message
            more_oneofs: set[str] | None = None
            for key, item in value.items():
                spec = fields.get(key)
                if spec is None:
                    raise _fail(
                        f'message {desc.full_name} has no field named "{key}"; '
                        f"known fields: {sorted(f.json_name for f in desc.fields)}"
                    )
                name, oneof, conv = spec
                if item is None:
                    out.pop(name, None)
                    continue
                if oneof is not None:
                    if first_oneof is None:
                        first_oneof = oneof
                    elif oneof == first_oneof or (more_oneofs is not None and oneof in more_oneofs):
                        raise _fail(f'more than one field of oneof "{oneof}"')
                    else:
                        more_oneofs = more_oneofs or set()
                        more_oneofs.add(oneof)
                try:
                    out[name] = conv(item)
                except ValidationError as exc:
                    exc.path.insert(0, "." + key)
                    raise
            return out

        # Register before filling so recursive message types terminate.
        self._done[desc.full_name] = convert
        for field in desc.fields:
            conv = self._field(field)
            oneof = field.containing_oneof.name if field.containing_oneof is not None else None
            fields[field.json_name] = (field.name, oneof, conv)
            fields[field.name] = (field.name, oneof, conv)
        return convert

    def _field(self, field: _d.FieldDescriptor) -> Converter:
        is_message = field.type == _d.FieldDescriptor.TYPE_MESSAGE
        if is_message and field.message_type.GetOptions().map_entry:
            return self._map(field)
        single = self.message(field.message_type) if is_message else _scalar_converter(field)
        if not _is_repeated(field):
            return single

        def convert_list(value: Any) -> list[Any]:
            if type(value) is not list and type(value) is not tuple:
                raise _fail("repeated field must be a list")
            out: list[Any] = []
            append = out.append
            index = 0
            try:
                for index, item in enumerate(value):  # noqa: B007 - used on the error path
                    if item is None:
                        raise _fail("null is not allowed in a list")
                    append(single(item))
            except ValidationError as exc:
                exc.path.insert(0, f"[{index}]")
                raise
            return out

        columnar = _COLUMNAR.get(field.message_type.full_name) if is_message else None
        if columnar is not None:
            rl = columnar

            def convert_points(value: Any) -> Any:
                # The usual form, read by columns; anything else, point by point (exactly).
                fast = read_points(value, rl)
                return fast if fast is not None else convert_list(value)

            return convert_points
        return convert_list

    def _map(self, field: _d.FieldDescriptor) -> Converter:
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        key_conv = _map_key_converter(key_field)
        if value_field.type == _d.FieldDescriptor.TYPE_MESSAGE:
            value_conv = self.message(value_field.message_type)
        else:
            value_conv = _scalar_converter(value_field)

        def convert_map(value: Any) -> dict[Any, Any]:
            if type(value) is not dict:
                raise _fail("map field must be an object")
            out = {}
            for key, item in value.items():
                try:
                    out[key_conv(key)] = value_conv(item)
                except ValidationError as exc:
                    exc.path.insert(0, f"[{key!r}]")
                    raise
            return out

        return convert_map
