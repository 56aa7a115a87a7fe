"""Kubernetes protobuf bodies (``application/vnd.kubernetes.protobuf``) to and from JSON dicts.

A body is the magic ``k8s\\x00`` followed by a ``runtime.Unknown`` message: 1 typeMeta
{1 apiVersion, 2 kind}, 2 raw (the object's own message), 3 contentEncoding, 4 contentType.
Messages follow the gogo/proto2 layout of the upstream ``generated.proto`` files: field numbers
come from the kinds registry, wire types are derived from the Go field types (the upstream struct
tags are known to be wrong in places), repeated scalars are unpacked (packed is accepted on
decode), maps are repeated {1 key, 2 value} entries and a named slice used as a map value is
wrapped in a message {1 repeated items}.

Decoding yields the JSON the upstream Go JSON encoder would produce for the decoded object:
fields absent on the wire are omitted, and zero scalars of non-pointer ``omitempty`` fields are
dropped.
"""

from __future__ import annotations

import base64
import calendar
import json
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from edgek import kinds, names

MAGIC = b"k8s\x00"

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_MASK64 = (1 << 64) - 1
_INT_RANGES = {
    "int32": (-(1 << 31), (1 << 31) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1),
    "int": (-(1 << 63), (1 << 63) - 1),
    "uint32": (0, (1 << 32) - 1),
    "uint64": (0, _MASK64),
    "byte": (0, 255),
}

#: Types whose JSON is either a schema object or another shape (apiextensions/v1).
_SCHEMA_OR = {
    "apiextensions/v1.JSONSchemaPropsOrArray": "[]apiextensions/v1.JSONSchemaProps",
    "apiextensions/v1.JSONSchemaPropsOrStringArray": "[]string",
    "apiextensions/v1.JSONSchemaPropsOrBool": "bool",
}
_SCHEMA = "apiextensions/v1.JSONSchemaProps"

#: Scheme name the upstream apiserver reports in "no kind registered" errors.
_SCHEME = "pkg/api/legacyscheme/scheme.go:30"


class ProtobufError(ValueError):
    """A body that is not a valid Kubernetes protobuf message for the expected type."""


# ---------------------------------------------------------------------------
# Schema


@cache
def _message(type_name: str) -> dict[int, kinds.Field]:
    """The protobuf fields of a struct type by field number; an embedded (inline) struct is
    one field holding a nested message."""
    return {f.proto: f for f in kinds.members(type_name) if f.proto is not None}


def _wire_type(ref: kinds.TypeRef) -> int:
    """The wire type of one (non-repeated) value of a resolved type."""
    if ref.shape == "scalar":
        if ref.name == "string":
            return _LEN
        if ref.name == "float64":
            return _I64
        if ref.name == "float32":
            return _I32
        return _VARINT
    return _LEN


# ---------------------------------------------------------------------------
# Wire reading


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if shift >= 64:
            raise ProtobufError("proto: integer overflow")
        if pos >= len(buf):
            raise ProtobufError("unexpected EOF")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & _MASK64, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """Split a message into (field number, wire type, value): ints for varint/fixed, bytes for
    length-delimited."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number <= 0:
            raise ProtobufError(f"proto: illegal tag {number} (wire type {wire})")
        value: Any
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire in (_I64, _I32):
            size = 8 if wire == _I64 else 4
            if pos + size > len(buf):
                raise ProtobufError("unexpected EOF")
            value = int.from_bytes(buf[pos : pos + size], "little")
            pos += size
        elif wire == _LEN:
            length, pos = _read_varint(buf, pos)
            if length >= 1 << 63:
                raise ProtobufError("proto: negative length found during unmarshaling")
            if pos + length > len(buf):
                raise ProtobufError("unexpected EOF")
            value = buf[pos : pos + length]
            pos += length
        else:
            raise ProtobufError(f"proto: illegal wireType {wire}")
        out.append((number, wire, value))
    return out


def _check_wire(got: int, want: int, name: str) -> None:
    if got != want:
        raise ProtobufError(f"proto: wrong wireType = {got} for field {name}")


# ---------------------------------------------------------------------------
# Decoding


def _scalar(name: str, wire: int, raw: Any, field: str) -> Any:
    """Decode one scalar of Go type ``name`` from a wire value."""
    if name == "string":
        _check_wire(wire, _LEN, field)
        return bytes(raw).decode("utf-8", errors="replace")
    if name in ("float64", "float32"):
        want = _I64 if name == "float64" else _I32
        _check_wire(wire, want, field)
        return struct.unpack(
            "<d" if want == _I64 else "<f", raw.to_bytes(8 if want == _I64 else 4, "little")
        )[0]
    _check_wire(wire, _VARINT, field)
    if name == "bool":
        return raw != 0
    if name in ("int32", "uint32"):
        raw &= 0xFFFFFFFF
        return raw - (1 << 32) if name == "int32" and raw >= 1 << 31 else raw
    if name == "byte":
        return raw & 0xFF
    if name in ("int64", "int"):
        return raw - (1 << 64) if raw >= 1 << 63 else raw
    return raw


def _json_bytes(raw: bytes, field: str) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as e:
        raise ProtobufError(f"invalid JSON in field {field}: {e}") from None


def _timestamp(raw: bytes, type_name: str, field: str) -> str | None:
    if not raw:
        return None  # the zero time marshals as an empty message; its JSON is null
    seconds = nanos = 0
    for number, wire, value in _fields(raw):
        if number == 1:
            seconds = _scalar("int64", wire, value, "Seconds")
        elif number == 2:
            nanos = _scalar("int32", wire, value, "Nanos")
    try:
        when = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise ProtobufError(f"time out of range in field {field}") from None
    if type_name == "meta/v1.Time":  # second precision: upstream drops the nanos
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")
    return when.strftime("%Y-%m-%dT%H:%M:%S") + f".{max(0, nanos) // 1000 % 1000000:06d}Z"


def _special(name: str, raw: bytes, field: str) -> Any:
    """Decode the message of one of :data:`kinds.SPECIAL_TYPES`."""
    if name in ("meta/v1.Time", "meta/v1.MicroTime"):
        return _timestamp(raw, name, field)
    parts = _fields(raw)
    if name == "resource.Quantity":
        text = "0"
        for number, wire, value in parts:
            if number == 1:
                text = _scalar("string", wire, value, "String")
        return text
    if name == "intstr.IntOrString":
        return _int_or_string(parts)
    if name in ("meta/v1.FieldsV1", "runtime.RawExtension", "apiextensions/v1.JSON"):
        payload = b""
        for number, wire, value in parts:
            if number == 1:
                _check_wire(wire, _LEN, "Raw")
                payload = value
        return _json_bytes(payload, field)
    raise ProtobufError(f"protobuf decoding of {name} is not supported")


def _int_or_string(parts: list[tuple[int, int, Any]]) -> Any:
    """An IntOrString message: its string when Type is 1, else its int."""
    kind, int_val, str_val = 0, 0, ""
    for number, wire, value in parts:
        if number == 1:
            kind = _scalar("int64", wire, value, "Type")
        elif number == 2:
            int_val = _scalar("int32", wire, value, "IntVal")
        elif number == 3:
            str_val = _scalar("string", wire, value, "StrVal")
    return str_val if kind == 1 else int_val


def _value(ref: kinds.TypeRef, wire: int, raw: Any, field: str) -> Any:
    """Decode one non-repeated value of a resolved type."""
    if ref.shape == "scalar":
        return _scalar(ref.name, wire, raw, field)
    _check_wire(wire, _LEN, field)
    if ref.shape == "bytes":
        return base64.b64encode(raw).decode("ascii")
    if ref.shape == "special":
        return _special(ref.name, raw, field)
    if ref.shape == "struct":
        return _decode_struct(raw, ref.name)
    if ref.shape == "list":  # a named slice used as a map value: message {1 repeated items}
        assert ref.elem is not None
        items: list[Any] = []
        for number, w, v in _fields(raw):
            if number == 1:
                _append(items, ref.elem, w, v, field)
        return items
    raise ProtobufError(f"field {field}: a map cannot be nested here")


def _append(items: list[Any], elem: kinds.TypeRef, wire: int, raw: Any, field: str) -> None:
    """Add one wire occurrence of a repeated field, unpacking packed scalars."""
    if elem.shape == "scalar" and wire == _LEN and _wire_type(elem) != _LEN:
        pos, size = 0, len(raw)
        while pos < size:
            if _wire_type(elem) == _VARINT:
                v, pos = _read_varint(raw, pos)
            else:
                width = 8 if _wire_type(elem) == _I64 else 4
                if pos + width > size:
                    raise ProtobufError("unexpected EOF")
                v = int.from_bytes(raw[pos : pos + width], "little")
                pos += width
            items.append(_scalar(elem.name, _wire_type(elem), v, field))
        return
    items.append(_value(elem, wire, raw, field))


def _map_entry(elem: kinds.TypeRef, raw: bytes, field: str) -> tuple[str, Any]:
    key = ""
    value: Any = None
    seen = False
    for number, wire, v in _fields(raw):
        if number == 1:
            key = _scalar("string", wire, v, field)
        elif number == 2:
            value, seen = _value(elem, wire, v, field), True
    if not seen:  # an entry without a value carries the zero value
        value = _value(elem, _wire_type(elem), 0 if _wire_type(elem) != _LEN else b"", field)
    return key, value


def _is_zero(value: Any) -> bool:
    return value is None or value == 0 or value == ""


def _schema_or(type_name: str, raw: bytes) -> Any:
    """Decode a JSONSchemaPropsOr{Array,StringArray,Bool} message to its JSON shape."""
    schema_ref = kinds.TypeRef("struct", _SCHEMA)
    alt_ref = kinds.resolve(_SCHEMA_OR[type_name])
    schema: Any = None
    if alt_ref.shape != "list":  # OrBool: 1 allows, 2 schema; JSON is the schema or the bool
        allows = False
        for number, wire, v in _fields(raw):
            if number == 1:
                allows = _scalar("bool", wire, v, "Allows")
            elif number == 2:
                schema = _value(schema_ref, wire, v, "Schema")
        return allows if schema is None else schema
    # 1 schema, 2 repeated alternative; JSON is the non-empty list, else the schema (or null)
    assert alt_ref.elem is not None
    items: list[Any] = []
    for number, wire, v in _fields(raw):
        if number == 1:
            schema = _value(schema_ref, wire, v, "Schema")
        elif number == 2:
            _append(items, alt_ref.elem, wire, v, type_name)
    return items if items else schema


def _decode_struct(raw: bytes, type_name: str) -> Any:
    """Decode a struct message into its JSON dict."""
    if type_name in _SCHEMA_OR:
        return _schema_or(type_name, raw)
    spec = _message(type_name)
    out: dict[str, Any] = {}
    for number, wire, v in _fields(raw):
        f = spec.get(number)
        if f is None:
            continue  # unknown fields are skipped, as upstream does
        if f.inline:
            _check_wire(wire, _LEN, f.go)
            out.update(_decode_struct(v, f.type.lstrip("*")))
            continue
        ref = kinds.resolve(f.type)
        if ref.shape == "list":
            assert ref.elem is not None
            _append(out.setdefault(f.json, []), ref.elem, wire, v, f.go)
        elif ref.shape == "map":
            assert ref.elem is not None
            _check_wire(wire, _LEN, f.go)
            key, value = _map_entry(ref.elem, v, f.go)
            out.setdefault(f.json, {})[key] = value
        else:
            out[f.json] = _value(ref, wire, v, f.go)
    for f in spec.values():  # Go's omitempty drops zero scalars of non-pointer fields
        if (
            f.json in out
            and f.omitempty
            and not f.type.startswith("*")
            and kinds.resolve(f.type).shape in ("scalar", "bytes")
            and _is_zero(out[f.json])
        ):
            del out[f.json]
    return out


def _unknown(body: bytes) -> tuple[str, str, bytes]:
    """Split an envelope into (apiVersion, kind, raw)."""
    if not body:
        raise ProtobufError("empty data")
    if not body.startswith(MAGIC):
        prefix = "[" + " ".join(str(b) for b in MAGIC) + "]"
        raise ProtobufError(
            f"provided data does not appear to be a protobuf message, expected prefix {prefix}"
        )
    if len(body) == len(MAGIC):
        raise ProtobufError("empty body")
    api_version = kind = ""
    raw = b""
    for number, wire, v in _fields(body[len(MAGIC) :]):
        if number == 1:
            _check_wire(wire, _LEN, "TypeMeta")
            api_version, kind = _type_meta(v)
        elif number == 2:
            _check_wire(wire, _LEN, "Raw")
            raw = v
        elif number in (3, 4):
            _check_wire(wire, _LEN, "ContentEncoding" if number == 3 else "ContentType")
    return api_version, kind, raw


def _type_meta(raw: bytes) -> tuple[str, str]:
    """(apiVersion, kind) of an envelope's TypeMeta message."""
    api_version = kind = ""
    for n, w, tv in _fields(raw):
        if n == 1:
            api_version = _scalar("string", w, tv, "APIVersion")
        elif n == 2:
            kind = _scalar("string", w, tv, "Kind")
    return api_version, kind


def decode(body: bytes, type_for: Callable[[str, str], str | None]) -> dict[str, Any]:
    """Decode an envelope into a JSON-shaped dict with ``apiVersion`` and ``kind`` from its
    typeMeta. ``type_for(apiVersion, kind)`` names the schema type (e.g.
    ``"apps/v1.Deployment"``) or returns None for an unregistered kind.

    Raises :class:`ProtobufError` for bad magic, malformed messages, wrong wire types, missing
    kind/apiVersion, unregistered kinds and invalid embedded JSON.
    """
    api_version, kind, raw = _unknown(body)
    type_meta = (
        f"runtime.TypeMeta{{APIVersion:{names.go_quote(api_version)}, Kind:{names.go_quote(kind)}}}"
    )
    if not kind:
        raise ProtobufError(f"Object 'Kind' is missing in '{type_meta}'")
    if not api_version:
        raise ProtobufError(f"Object 'apiVersion' is missing in '{type_meta}'")
    type_name = type_for(api_version, kind)
    if type_name is None or not _message(type_name):
        raise ProtobufError(
            f"no kind {names.go_quote(kind)} is registered for version {names.go_quote(api_version)}"
            f" in scheme {names.go_quote(_SCHEME)}"
        )
    obj = _decode_struct(raw, type_name)
    return {"apiVersion": api_version, "kind": kind, **obj}


# ---------------------------------------------------------------------------
# Encoding


def _varint(value: int) -> bytes:
    value &= _MASK64
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _len_field(number: int, payload: bytes) -> bytes:
    return _tag(number, _LEN) + _varint(len(payload)) + payload


def _enc_scalar(name: str, value: Any, field: str) -> bytes:
    """The wire payload (without tag) of one scalar."""
    if name == "string":
        if not isinstance(value, str):
            raise ProtobufError(f"field {field}: expected a string, got {value!r}")
        data = value.encode()
        return _varint(len(data)) + data
    if name in ("float64", "float32"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ProtobufError(f"field {field}: expected a number, got {value!r}")
        return struct.pack("<d" if name == "float64" else "<f", float(value))
    if name == "bool":
        if not isinstance(value, bool):
            raise ProtobufError(f"field {field}: expected a boolean, got {value!r}")
        return _varint(int(value))
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtobufError(f"field {field}: expected an integer, got {value!r}")
    low, high = _INT_RANGES.get(name, _INT_RANGES["int64"])
    if not low <= value <= high:
        raise ProtobufError(f"field {field}: {value} is out of range for {name}")
    return _varint(value)


def _enc_timestamp(value: str, type_name: str, field: str) -> bytes:
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise ProtobufError(f"field {field}: invalid time {value!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = calendar.timegm(when.utctimetuple())
    nanos = when.microsecond * 1000 if type_name == "meta/v1.MicroTime" else 0
    return _tag(1, _VARINT) + _varint(seconds) + _tag(2, _VARINT) + _varint(nanos)


def _enc_special(name: str, value: Any, field: str) -> bytes:
    """The message body of one of :data:`kinds.SPECIAL_TYPES`."""
    if name in ("meta/v1.Time", "meta/v1.MicroTime"):
        return b"" if value is None else _enc_timestamp(value, name, field)
    if name == "resource.Quantity":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ProtobufError(f"field {field}: invalid quantity {value!r}")
        return _tag(1, _LEN) + _enc_scalar("string", str(value), field)
    if name == "intstr.IntOrString":
        is_str = isinstance(value, str)
        return (
            _tag(1, _VARINT)
            + _varint(int(is_str))
            + _tag(2, _VARINT)
            + _enc_scalar("int32", 0 if is_str else value, field)
            + _tag(3, _LEN)
            + _enc_scalar("string", value if is_str else "", field)
        )
    if name in ("meta/v1.FieldsV1", "runtime.RawExtension", "apiextensions/v1.JSON"):
        if value is None:
            return b""
        return _len_field(1, json.dumps(value, separators=(",", ":")).encode())
    raise ProtobufError(f"protobuf encoding of {name} is not supported")


def _enc_value(number: int, ref: kinds.TypeRef, value: Any, field: str) -> bytes:
    """One non-repeated field occurrence, tag included."""
    if ref.shape == "scalar":
        return _tag(number, _wire_type(ref)) + _enc_scalar(ref.name, value, field)
    if ref.shape == "bytes":
        try:
            data = base64.b64decode(value, validate=True)
        except (TypeError, ValueError):
            raise ProtobufError(f"field {field}: invalid base64 data") from None
        return _len_field(number, data)
    if ref.shape == "special":
        return _len_field(number, _enc_special(ref.name, value, field))
    if ref.shape == "struct":
        return _len_field(number, _encode_struct(value, ref.name))
    if ref.shape == "list":  # a named slice used as a map value
        assert ref.elem is not None
        return _len_field(number, _enc_repeated(1, ref.elem, value, field))
    raise ProtobufError(f"field {field}: a map cannot be nested here")


def _enc_repeated(number: int, elem: kinds.TypeRef, value: Any, field: str) -> bytes:
    if not isinstance(value, list):
        raise ProtobufError(f"field {field}: expected a list, got {value!r}")
    return b"".join(_enc_value(number, elem, item, field) for item in value)


def _schema_or_body(type_name: str, value: Any) -> bytes:
    """Encode a JSONSchemaPropsOr{Array,StringArray,Bool} from its JSON shape."""
    schema_ref = kinds.TypeRef("struct", _SCHEMA)
    alt_ref = kinds.resolve(_SCHEMA_OR[type_name])
    if alt_ref.shape != "list":  # OrBool: 1 allows, 2 schema
        if isinstance(value, bool):
            return _tag(1, _VARINT) + _varint(int(value))
        return _tag(1, _VARINT) + _varint(1) + _enc_value(2, schema_ref, value, type_name)
    assert alt_ref.elem is not None
    if isinstance(value, list):
        return _enc_repeated(2, alt_ref.elem, value, type_name)
    return _enc_value(1, schema_ref, value, type_name)


def _encode_struct(obj: Any, type_name: str) -> bytes:
    """Encode a JSON dict as the message of a struct type; keys outside the schema are
    ignored, ``None`` values are left out."""
    if type_name in _SCHEMA_OR:
        return _schema_or_body(type_name, obj)
    if not isinstance(obj, dict):
        raise ProtobufError(f"expected an object for {type_name}, got {obj!r}")
    out = bytearray()
    for number in sorted(_message(type_name)):
        f = _message(type_name)[number]
        if f.inline:
            inner = _encode_struct(obj, f.type.lstrip("*"))
            if inner:
                out += _len_field(number, inner)
            continue
        value = obj.get(f.json)
        if value is None:
            continue
        ref = kinds.resolve(f.type)
        if ref.shape == "list":
            assert ref.elem is not None
            out += _enc_repeated(number, ref.elem, value, f.json)
        elif ref.shape == "map":
            assert ref.elem is not None
            out += _enc_map(number, ref.elem, value, f.json)
        else:
            out += _enc_value(number, ref, value, f.json)
    return bytes(out)


def _enc_map(number: int, elem: kinds.TypeRef, value: Any, field: str) -> bytes:
    """A map field: one key/value entry message per key, in key order."""
    if not isinstance(value, dict):
        raise ProtobufError(f"field {field}: expected an object, got {value!r}")
    out = bytearray()
    for key in sorted(value):
        entry = _tag(1, _LEN) + _enc_scalar("string", key, field)
        entry += _enc_value(2, elem, value[key], field)
        out += _len_field(number, entry)
    return bytes(out)


def encode(obj: dict[str, Any], type_name: str) -> bytes:
    """Encode a JSON-shaped object of schema type ``type_name`` as a protobuf envelope; the
    typeMeta comes from the object's ``apiVersion`` and ``kind``."""
    type_meta = _tag(1, _LEN) + _enc_scalar("string", obj.get("apiVersion", ""), "apiVersion")
    type_meta += _tag(2, _LEN) + _enc_scalar("string", obj.get("kind", ""), "kind")
    raw = _encode_struct(obj, type_name)
    return (
        MAGIC
        + _len_field(1, type_meta)
        + _len_field(2, raw)
        + _len_field(3, b"")
        + _len_field(4, b"")
    )


# ---------------------------------------------------------------------------
# Type lookup


@cache
def _type_table() -> dict[tuple[str, str], str]:
    table: dict[tuple[str, str], str] = {}
    for k in kinds.builtin_kinds():
        if k.type_name:
            table[(k.api_version, k.kind)] = k.type_name
    table.update(kinds.body_types())
    # Every group version registers DeleteOptions (client-go tags it with the client's group
    # version); meta.k8s.io/v1 is accepted too.
    versions = {av for av, _ in table} | {"meta.k8s.io/v1"}
    for av in versions:
        table[(av, "DeleteOptions")] = "meta/v1.DeleteOptions"
    return table


def default_type_for(api_version: str, kind: str) -> str | None:
    """The schema type of a built-in kind, a body kind such as Scale, Eviction or
    TokenRequest (:func:`kinds.body_types`), or DeleteOptions; else None."""
    return _type_table().get((api_version, kind))
