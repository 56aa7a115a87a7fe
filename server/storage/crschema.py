"""Custom resources against the structural ``openAPIV3Schema`` of their CRD version.

Mirrors k8s.io/apiextensions-apiserver: pruning (:func:`unknown_fields`, :func:`prune`),
defaulting including the removal of non-nullable nulls (:func:`apply_defaults`), and
validation (:func:`validate`) with the causes upstream produces from kube-openapi's schema
validator, the ``x-kubernetes-list-type`` set/map checks and the embedded-resource
TypeMeta checks. Field paths are upstream's: ``spec.ports[0].port``; additionalProperties
keys are ``.key`` in schema errors and ``[key]`` in list-type and embedded-resource errors.

Upstream quirks kept on purpose: a type mismatch does not stop the other checks (an enum
failure is reported too); ``null`` never satisfies ``enum``; ``maxLength``/``maxItems``
violations read ``Too long: value is too long`` / ``Too many: N: has too many items``
because kube-openapi does not pass the limit on; an integer value is compared with
``int(limit)``; ``format`` only checks what survives upstream's format stripping
(integer int32/int64 and number float/double constrain only the JSON type).

Not implemented: CEL ``x-kubernetes-validations``, ``allOf``/``anyOf``/``oneOf``/``not``,
``minProperties``/``maxProperties``, ObjectMeta validation inside embedded resources, the
string formats ``uri``, ``email``, ``duration``, ``isbn*``, ``creditcard`` and ``ssn``
(accepted as is), Unicode letters in ``hostname``, and invalid ``pattern`` regexes (CRD
validation rejects them; they are skipped here).
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime
import functools
import ipaddress
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from edgek import kinds, names
from edgek.gofloat import go_float
from edgek.quantity import parse_quantity

Schema = dict[str, Any]
Cause = dict[str, str]

_META_FIELDS = ("apiVersion", "kind", "metadata")
_OBJECT_META_FIELDS = frozenset(kinds.fields("meta/v1.ObjectMeta"))


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# ---------------------------------------------------------------------------
# Pruning


def _addl_schema(s: Schema) -> tuple[bool, Schema | None]:
    """additionalProperties as upstream's structural form: whether other keys are allowed,
    and their schema (None for ``true``: allowed, but nothing below them is kept)."""
    addl = s.get("additionalProperties")
    if isinstance(addl, dict):
        return True, addl
    return addl is True, None


def _walk_unknown(
    x: Any, s: Schema | None, path: str, found: list[str], drop: bool, *, preserve: bool = False
) -> None:
    """Upstream's prune/skipPrune: record (and with ``drop`` remove) fields ``s`` forbids.
    ``s`` None means "nothing is known here"; ``preserve`` keeps unknown fields."""
    if s is not None and s.get("x-kubernetes-preserve-unknown-fields"):
        preserve = True
    if preserve and s is None:
        return
    if isinstance(x, dict):
        _walk_unknown_fields(x, s, path, found, drop, preserve)
    elif isinstance(x, list):
        items = s.get("items") if s is not None else None
        for i, v in enumerate(x):
            _walk_unknown(v, items, f"{path}[{i}]", found, drop, preserve=preserve)


def _walk_unknown_fields(
    x: dict[str, Any], s: Schema | None, path: str, found: list[str], drop: bool, preserve: bool
) -> None:
    """:func:`_walk_unknown` over an object's fields."""
    if s is None:
        _report_unknown(x, list(x), path, found, drop)
        return
    embedded = bool(s.get("x-kubernetes-embedded-resource"))
    props = s.get("properties") or {}
    addl_allowed, addl = _addl_schema(s)
    for k in list(x):
        p = _key(path, k)
        if embedded and k in _META_FIELDS:
            if k == "metadata" and path and isinstance(x[k], dict):
                _walk_object_meta(x[k], p, found, drop)
            continue
        if k in props:
            _walk_unknown(x[k], props[k], p, found, drop)
        elif addl_allowed:
            _walk_unknown(x[k], addl, p, found, drop)
        elif not preserve:
            _report_unknown(x, [k], path, found, drop)


def _walk_object_meta(meta: dict[str, Any], path: str, found: list[str], drop: bool) -> None:
    _report_unknown(meta, [k for k in meta if k not in _OBJECT_META_FIELDS], path, found, drop)


def _report_unknown(
    x: dict[str, Any], keys: list[str], path: str, found: list[str], drop: bool
) -> None:
    """Record the unknown fields ``keys`` of ``x`` (and with ``drop`` remove them)."""
    for k in keys:
        found.append(_key(path, k))
        if drop:
            del x[k]


def _as_root(schema: Schema) -> Schema:
    return {**schema, "x-kubernetes-embedded-resource": True}


def unknown_fields(schema: Schema | None, obj: dict[str, Any]) -> list[str]:
    """Sorted dotted paths of the fields the structural schema does not allow."""
    if schema is None:
        return []
    found: list[str] = []
    _walk_unknown(obj, _as_root(schema), "", found, drop=False)
    return sorted(found)


def prune(schema: Schema | None, obj: dict[str, Any]) -> None:
    """Remove (in place) exactly the fields :func:`unknown_fields` reports."""
    if schema is not None:
        _walk_unknown(obj, _as_root(schema), "", [], drop=True)


# ---------------------------------------------------------------------------
# Defaulting


def _field_schema(key: str, s: Schema | None) -> Schema | None:
    if s is None:
        return None
    props = s.get("properties") or {}
    if key in props:
        result: Schema = props[key]
        return result
    addl = s.get("additionalProperties")
    return addl if isinstance(addl, dict) else None


def _non_nullable_null(x: Any, s: Schema | None) -> bool:
    return x is None and s is not None and not s.get("nullable")


def _prune_nulls(x: Any, s: Schema | None) -> None:
    """Drop non-nullable nulls that have no default (those with one get defaulted)."""
    if isinstance(x, dict):
        for k in list(x):
            sub = _field_schema(k, s)
            if _non_nullable_null(x[k], sub) and (sub or {}).get("default") is None:
                del x[k]
            else:
                _prune_nulls(x[k], sub)
    elif isinstance(x, list):
        items = s.get("items") if s is not None else None
        for v in x:
            _prune_nulls(v, items)


def _default(x: Any, s: Schema | None) -> None:
    if s is None:
        return
    if isinstance(x, dict):
        _default_fields(x, s)
    elif isinstance(x, list):
        items = s.get("items")
        if not isinstance(items, dict):
            return
        for i, v in enumerate(x):
            if _non_nullable_null(v, items):
                x[i] = copy.deepcopy(items.get("default"))
            _default(x[i], items)


def _default_fields(x: dict[str, Any], s: Schema) -> None:
    """:func:`_default` over an object: its missing fields, then each field's value."""
    props = s.get("properties") or {}
    for k, prop in props.items():
        if prop.get("default") is None:
            continue
        if k not in x or _non_nullable_null(x[k], prop):
            x[k] = copy.deepcopy(prop["default"])
    addl = s.get("additionalProperties")
    for k in list(x):
        if k in props:
            _default(x[k], props[k])
        elif isinstance(addl, dict):
            if _non_nullable_null(x[k], addl):
                x[k] = copy.deepcopy(addl.get("default"))
            _default(x[k], addl)


def apply_defaults(schema: Schema | None, obj: dict[str, Any]) -> None:
    """Structural defaulting in place: non-nullable nulls without a default are removed,
    then missing (or non-nullable null) fields get a deep copy of their ``default``."""
    if schema is None:
        return
    _prune_nulls(obj, schema)
    _default(obj, schema)


# ---------------------------------------------------------------------------
# Rendering values the way upstream messages print them


def _go_float_g(f: float) -> str:
    """strconv's shortest 'g' form, as kube-openapi's messages print floats."""
    return go_float(f, exponent_from=6)


def _json(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _body_value(v: Any) -> str:
    """A bad value as field.Error's ErrorBody prints it."""
    if isinstance(v, str):
        return names.go_quote(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_float_g(v)
    return _json(v)


def _num(v: Any) -> str:
    return _go_float_g(v) if isinstance(v, float) else str(v)


def _cause(reason: str, path: str, message: str) -> Cause:
    return {"reason": reason, "message": message, "field": path}


def _invalid(path: str, value: Any, detail: str) -> Cause:
    return _cause("FieldValueInvalid", path, f"Invalid value: {_body_value(value)}: {detail}")


def _type_invalid(path: str, value: str, detail: str) -> Cause:
    return _cause("FieldValueTypeInvalid", path, f"Invalid value: {_body_value(value)}: {detail}")


def _required(path: str) -> Cause:
    return _cause("FieldValueRequired", path, "Required value")


def _duplicate(path: str, value: Any) -> Cause:
    return _cause("FieldValueDuplicate", path, f"Duplicate value: {_body_value(value)}")


# ---------------------------------------------------------------------------
# Formats


_SUPPORTED_STRING_FORMATS = frozenset(
    [
        "bsonobjectid",
        "uri",
        "email",
        "hostname",
        "ipv4",
        "ipv6",
        "cidr",
        "mac",
        "uuid",
        "uuid3",
        "uuid4",
        "uuid5",
        "isbn",
        "isbn10",
        "isbn13",
        "creditcard",
        "ssn",
        "hexcolor",
        "rgbcolor",
        "byte",
        "password",
        "date",
        "duration",
        "datetime",
        "quantity",
    ]
)
_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_TIME = re.compile(r"([0-9]{2}):([0-9]{2}):([0-9]{2})(.[0-9]+)?(z|[+-][0-9]{2}:[0-9]{2})")
_HOST_LABEL = "[a-zA-Z0-9]"
_HOSTNAME = re.compile(
    rf"{_HOST_LABEL}(-?{_HOST_LABEL}{{0,62}})?"
    rf"|({_HOST_LABEL}([a-zA-Z0-9-]{{0,61}}{_HOST_LABEL})?\.)+{_HOST_LABEL}(-?{_HOST_LABEL}){{1,62}}"
)
_UUID = "[0-9a-f]{8}-?[0-9a-f]{4}-?%s[0-9a-f]{3}-?%s[0-9a-f]{3}-?[0-9a-f]{12}"
_UUIDS = {
    "uuid": re.compile(_UUID % ("[0-9a-f]", "[0-9a-f]"), re.I),
    "uuid3": re.compile(_UUID % ("3", "[0-9a-f]"), re.I),
    "uuid4": re.compile(_UUID % ("4", "[89ab]"), re.I),
    "uuid5": re.compile(_UUID % ("5", "[89ab]"), re.I),
}
_BASE64 = re.compile(
    r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})"
)
_BYTE = r"\s*(0|[1-9]\d?|1\d\d?|2[0-4]\d|25[0-5])\s*"
_RGB = re.compile(rf"rgb\({_BYTE},{_BYTE},{_BYTE}\)", re.ASCII)


def _is_date(s: str) -> bool:
    m = _DATE.fullmatch(s)
    if m is None:
        return False
    try:
        datetime.date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return False
    return True


def _is_date_time(s: str) -> bool:
    parts = s.lower().split("t")
    if len(s) < 4 or len(parts) < 2 or not _is_date(parts[0]):
        return False
    m = _TIME.fullmatch(parts[1])
    return m is not None and m[1] <= "23" and m[2] <= "59" and m[3] <= "59"


def _is_ip(s: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(s).version == version
    except ValueError:
        return False


def _is_cidr(s: str) -> bool:
    try:
        ipaddress.ip_network(s, strict=False)
    except ValueError:
        return False
    return "/" in s


def _is_mac(s: str) -> bool:
    for sep, width, counts in ((":", 2, (6, 8, 20)), ("-", 2, (6, 8, 20)), (".", 4, (3, 4, 10))):
        parts = s.split(sep)
        if len(parts) in counts and all(re.fullmatch(f"[0-9a-fA-F]{{{width}}}", p) for p in parts):
            return True
    return False


def _is_base64(s: str) -> bool:
    if _BASE64.fullmatch(s) is None:
        return False
    try:
        base64.b64decode(s, validate=True)
    except binascii.Error:
        return False
    return True


def _is_hostname(s: str) -> bool:
    return (
        _HOSTNAME.fullmatch(s) is not None
        and len(s) <= 255
        and all(len(p) <= 63 for p in s.split("."))
    )


def _matches(rx: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda s: rx.fullmatch(s) is not None


def _is_quantity(s: str) -> bool:
    try:
        parse_quantity(s)
    except ValueError:
        return False
    return True


_FORMAT_CHECKS: dict[str, Callable[[str], bool]] = {
    "datetime": _is_date_time,
    "date": _is_date,
    "byte": _is_base64,
    "ipv4": lambda s: _is_ip(s, 4),
    "ipv6": lambda s: _is_ip(s, 6),
    "cidr": _is_cidr,
    "mac": _is_mac,
    "hostname": _is_hostname,
    "hexcolor": _matches(re.compile("#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})")),
    "rgbcolor": _matches(_RGB),
    "bsonobjectid": _matches(re.compile("[0-9a-fA-F]{24}")),
    "quantity": _is_quantity,
    **{name: _matches(rx) for name, rx in _UUIDS.items()},
}


def _format(s: Schema, types: list[str]) -> str:
    """The format upstream keeps after stripping the unsupported ones."""
    fmt = s.get("format") or ""
    kind = types[0] if len(types) == 1 else ""
    if not fmt:
        return ""
    if kind in ("", "string"):
        return fmt if fmt.replace("-", "") in _SUPPORTED_STRING_FORMATS else ""
    if kind == "integer":
        return fmt if fmt in ("int32", "int64") else ""
    if kind == "number":
        return fmt if fmt in ("float", "double") else ""
    return ""


log = logging.getLogger("edgek.crschema")


@functools.cache
def _pattern(pattern: str) -> Any:
    """``pattern`` compiled by RE2, the engine of upstream's Go regexp (matching time is
    linear in the input, whatever the pattern); None when it does not compile. RE2 is the
    ``google-re2`` dependency; an environment installed before it was added falls back to
    Python's backtracking ``re``, with a warning."""
    try:
        import re2
    except ImportError:
        log.warning("google-re2 is not installed: CRD patterns use Python's re")
        try:
            return re.compile(pattern)
        except re.error:
            return None
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error:
        return None


# ---------------------------------------------------------------------------
# Schema validation (kube-openapi)


#: Whole floats beyond this are not integers to kube-openapi (swag.IsFloat64AJSONInteger).
_MAX_JSON_INTEGER = 2**53


def _json_type(x: Any) -> str:
    """The JSON type of a decoded value; an integer beyond int64 is a number, as upstream's
    unstructured decoding makes it a float64."""
    if isinstance(x, bool):
        return "boolean"
    if isinstance(x, int):
        return "integer" if -(2**63) <= x < 2**63 else "number"
    if isinstance(x, float):
        return "number"
    if isinstance(x, str):
        return "string"
    if isinstance(x, list):
        return "array"
    return "object"


def _types(s: Schema) -> list[str]:
    if s.get("x-kubernetes-int-or-string"):
        return ["integer", "string"]
    return [s["type"]] if s.get("type") else []


def _check_type(x: Any, s: Schema, types: list[str], fmt: str, path: str) -> list[Cause]:
    if not types and not fmt:
        return []
    if x is None:
        if types and not s.get("nullable"):
            msg = f'{path} in body must be of type {",".join(types)}: "null"'
            return [_type_invalid(path, "null", msg)]
        return []
    got = _json_type(x)
    float_int = (
        got == "number"
        and float(x).is_integer()
        and abs(x) <= _MAX_JSON_INTEGER
        and "integer" in types
    )
    int_float = got == "integer" and "number" in types
    if got not in ("string", "array") and fmt:
        value_format = {"integer": "int64", "number": "float64"}.get(got, "")
        if not (got in types or value_format == fmt or float_int or int_float):
            msg = f'{path} in body must be of type {fmt}: "{value_format}"'
            return [_type_invalid(path, value_format, msg)]
    if not ("number" in types or "integer" in types) and fmt and got in ("string", "array"):
        return []
    if not (got in types or float_int or int_float):
        msg = f'{path} in body must be of type {",".join(types)}: "{got}"'
        return [_type_invalid(path, got, msg)]
    return []


def _check_string(x: str, s: Schema, fmt: str, path: str) -> list[Cause]:
    out: list[Cause] = []
    if s.get("maxLength") is not None and len(x) > s["maxLength"]:
        out.append(_cause("FieldValueTooLong", path, "Too long: value is too long"))
    elif s.get("minLength") is not None and len(x) < s["minLength"]:
        msg = f"{path} in body should be at least {s['minLength']} chars long"
        out.append(_invalid(path, x, msg))
    elif s.get("pattern"):
        rx = _pattern(s["pattern"])
        if rx is not None and rx.search(x) is None:
            out.append(_invalid(path, x, f"{path} in body should match '{s['pattern']}'"))
    check = _FORMAT_CHECKS.get(fmt.replace("-", ""))
    if check is not None and not check(x):
        out.append(_type_invalid(path, x, f'{path} in body must be of type {fmt}: "{x}"'))
    return out


def _check_number(x: int | float, s: Schema, path: str) -> list[Cause]:
    out: list[Cause] = []
    factor = s.get("multipleOf")
    if factor is not None and factor > 0:
        if isinstance(x, int) and int(factor) != 0:
            if x % int(factor):
                msg = f"{path} in body should be a multiple of {int(factor)}"
                out.append(_invalid(path, x, msg))
        else:
            mult = (1 / factor) * x if factor < 1 else x / factor
            if not float(mult).is_integer():
                msg = f"{path} in body should be a multiple of {_go_float_g(float(factor))}"
                out.append(_invalid(path, x, msg))
    for key, excl_key, word in (
        ("maximum", "exclusiveMaximum", "less"),
        ("minimum", "exclusiveMinimum", "greater"),
    ):
        if s.get(key) is None:
            continue
        limit: int | float = int(s[key]) if isinstance(x, int) else float(s[key])
        exclusive = bool(s.get(excl_key))
        beyond = x > limit if word == "less" else x < limit
        if beyond or (exclusive and x == limit):
            relation = f"{word} than" if exclusive else f"{word} than or equal to"
            msg = f"{path} in body should be {relation} {_num(limit)}"
            out.append(_invalid(path, x, msg))
    return out


def _canonical(v: Any) -> str:
    return json.dumps(v, sort_keys=True)


def _enum_matches(x: Any, allowed: Any) -> bool:
    if x is None or allowed is None:
        return False
    if isinstance(allowed, bool) or isinstance(x, bool):
        return isinstance(x, bool) and isinstance(allowed, bool) and x == allowed
    if isinstance(allowed, int | float) and isinstance(x, int | float):
        return (int(x) if isinstance(allowed, int) else float(x)) == allowed
    return _canonical(x) == _canonical(allowed)


def _check_enum(x: Any, enum: list[Any], path: str) -> list[Cause]:
    if any(_enum_matches(x, e) for e in enum):
        return []
    supported = ", ".join(names.go_quote(e if isinstance(e, str) else _json(e)) for e in enum)
    body = f"Unsupported value: {_body_value(x)}: supported values: {supported}"
    return [_cause("FieldValueNotSupported", path, body)]


def _validate_node(x: Any, s: Schema, path: str) -> list[Cause]:
    types = _types(s)
    fmt = _format(s, types)
    out = _check_type(x, s, types, fmt, path)
    if isinstance(x, str):
        out += _check_string(x, s, fmt, path)
    elif isinstance(x, int | float) and not isinstance(x, bool):
        out += _check_number(x, s, path)
    elif isinstance(x, list):
        out += _check_array(x, s, path)
    if s.get("enum"):
        out += _check_enum(x, s["enum"], path)
    if isinstance(x, dict):
        out += _check_object(x, s, path)
    return out


def _check_array(x: list[Any], s: Schema, path: str) -> list[Cause]:
    """The items, then the item count and uniqueness limits."""
    out: list[Cause] = []
    items = s.get("items")
    if isinstance(items, dict):
        for i, v in enumerate(x):
            out += _validate_node(v, items, f"{path}[{i}]")
    if s.get("minItems") is not None and len(x) < s["minItems"]:
        msg = f"{path} in body should have at least {s['minItems']} items"
        out.append(_invalid(path, len(x), msg))
    if s.get("maxItems") is not None and len(x) > s["maxItems"]:
        body = f"Too many: {len(x)}: has too many items"
        out.append(_cause("FieldValueTooMany", path, body))
    if s.get("uniqueItems") and len({_canonical(v) for v in x}) < len(x):
        out.append(_invalid(path, "", f"{path} in body shouldn't contain duplicates"))
    return out


def _check_object(x: dict[str, Any], s: Schema, path: str) -> list[Cause]:
    """The described fields, the additional ones, then the missing required ones."""
    out: list[Cause] = []
    props = s.get("properties") or {}
    for k, sub in props.items():
        if k in x:
            out += _validate_node(x[k], sub, _key(path, k))
    addl = s.get("additionalProperties")
    if isinstance(addl, dict):
        for k, v in x.items():
            if k not in props:
                out += _validate_node(v, addl, _key(path, k))
    out += [_required(_key(path, k)) for k in s.get("required") or () if k not in x]
    return out


# ---------------------------------------------------------------------------
# x-kubernetes-list-type and embedded resources (structural walks)


def _children(x: dict[str, Any], s: Schema, path: str) -> list[tuple[Any, Schema, str]]:
    """(value, schema, path) of the fields of ``x`` the schema describes."""
    props = s.get("properties") or {}
    addl = s.get("additionalProperties")
    out = []
    for k, v in x.items():
        if k in props:
            out.append((v, props[k], _key(path, k)))
        elif isinstance(addl, dict):
            out.append((v, addl, f"{path}[{k}]"))
    return out


def _repeats(values: list[Any]) -> list[int]:
    """Indices of the second appearance of each repeated value."""
    seen: dict[str, int] = {}
    out = []
    for i, v in enumerate(values):
        key = _canonical(v)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 2:
            out.append(i)
    return out


def _list_map_errors(x: list[Any], s: Schema, path: str) -> list[Cause]:
    for i, v in enumerate(x):
        if v is not None and not isinstance(v, dict):
            return [_invalid(f"{path}[{i}]", v, "must be an object for an array of list-type map")]
    key_fields = s.get("x-kubernetes-list-map-keys") or []
    keys = [{f: v[f] for f in key_fields if f in v} if v else {} for v in x]
    return [_duplicate(f"{path}[{i}]", keys[i]) for i in _repeats(keys)]


def _list_type_errors(x: Any, s: Schema, path: str) -> list[Cause]:
    out: list[Cause] = []
    if isinstance(x, dict):
        for v, sub, p in _children(x, s, path):
            out += _list_type_errors(v, sub, p)
    elif isinstance(x, list):
        list_type = s.get("x-kubernetes-list-type")
        if list_type == "set":
            out += [_duplicate(f"{path}[{i}]", x[i]) for i in _repeats(x)]
        elif list_type == "map":
            out += _list_map_errors(x, s, path)
        items = s.get("items")
        if isinstance(items, dict):
            for i, v in enumerate(x):
                out += _list_type_errors(v, items, f"{path}[{i}]")
    return out


def _type_meta_errors(x: dict[str, Any], path: str) -> list[Cause]:
    out = [_required(_key(path, k)) for k in ("apiVersion", "kind") if k not in x]
    for k in ("apiVersion", "kind"):
        if k not in x:
            continue
        v, p = x[k], _key(path, k)
        if not isinstance(v, str):
            out.append(_invalid(p, v, "must be a string"))
        elif not v:
            out.append(_required(p))
        elif k == "apiVersion" and v.count("/") > 1:
            out.append(_invalid(p, v, f"unexpected GroupVersion string: {v}"))
        elif k == "kind" and (errs := names.is_dns1035_label(v.lower())):
            detail = "may have mixed case, but should otherwise match: " + ",".join(errs)
            out.append(_invalid(p, v, detail))
    return out


def _embedded_errors(x: Any, s: Schema, path: str) -> list[Cause]:
    out: list[Cause] = []
    if isinstance(x, dict):
        if s.get("x-kubernetes-embedded-resource"):
            out += _type_meta_errors(x, path)
        for v, sub, p in _children(x, s, path):
            out += _embedded_errors(v, sub, p)
    elif isinstance(x, list) and isinstance(s.get("items"), dict):
        for i, v in enumerate(x):
            out += _embedded_errors(v, s["items"], f"{path}[{i}]")
    return out


def validate(schema: Schema | None, obj: dict[str, Any]) -> list[Cause]:
    """The causes of a 422 for ``obj`` (already pruned and defaulted), upstream-worded."""
    if schema is None:
        return []
    return (
        _validate_node(obj, schema, "")
        + _list_type_errors(obj, schema, "")
        + _embedded_errors(obj, schema, "")
    )
