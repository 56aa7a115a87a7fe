"""Label and field selectors: parsing, matching and the per-kind selectable fields.

Label selector text follows apimachinery ``labels.Parse`` (``k=v``, ``k==v``, ``k!=v``,
``k in (a,b)``, ``k notin (a,b)``, ``k``, ``!k``, ``k>N``, ``k<N``, comma = AND), including its
error messages. Field selectors follow ``fields.ParseSelector`` (``=``, ``==``, ``!=``; commas,
equals signs and backslashes in values escaped with a backslash) and the per-kind field label
conversions of the API server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from edgek import names


class SelectorError(ValueError):
    """An unparsable or unsupported selector; ``str(e)`` is the message for a 400 reply."""


# ---------------------------------------------------------------------------
# Label selectors

_EQ, _DEQ, _NEQ, _IN, _NOTIN, _EXISTS, _NOT_EXISTS, _GT, _LT = (
    "=",
    "==",
    "!=",
    "in",
    "notin",
    "exists",
    "!",
    "gt",
    "lt",
)
_BINARY_OPS = "in, notin, =, ==, !=, gt, lt"


@dataclass(frozen=True)
class Requirement:
    """One ANDed term of a label selector."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        if self.op in (_EQ, _DEQ, _IN):
            return has and labels[self.key] in self.values
        if self.op in (_NEQ, _NOTIN):
            return not has or labels[self.key] not in self.values
        if self.op == _EXISTS:
            return has
        if self.op == _NOT_EXISTS:
            return not has
        if not has or len(self.values) != 1:
            return False
        try:
            have, want = int(labels[self.key]), int(self.values[0])
        except ValueError:
            return False
        return have > want if self.op == _GT else have < want

    def __str__(self) -> str:
        if self.op == _EXISTS:
            return self.key
        if self.op == _NOT_EXISTS:
            return "!" + self.key
        joined = ",".join(sorted(self.values)) if len(self.values) > 1 else "".join(self.values)
        if self.op in (_IN, _NOTIN):
            return f"{self.key} {self.op} ({joined})"
        symbol = {_GT: ">", _LT: "<"}.get(self.op, self.op)
        return f"{self.key}{symbol}{joined}"


class LabelSelector:
    """A parsed label selector: a conjunction of requirements (or the match-nothing selector)."""

    def __init__(self, requirements: Iterable[Requirement] = (), *, nothing: bool = False):
        self.requirements = tuple(sorted(requirements, key=lambda r: r.key))
        self.nothing = nothing

    @property
    def empty(self) -> bool:
        """True when the selector matches everything."""
        return not self.nothing and not self.requirements

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        have = labels or {}
        return all(r.matches(have) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return f"LabelSelector({str(self)!r}{', nothing=True' if self.nothing else ''})"


_SPECIAL = "=!(),><"
_WHITESPACE = " \t\r\n"
_OPERATOR_TOKENS = {"(", ")", ",", "!", "==", "=", ">", "<", "!="}
_ERROR = "error"
_END = "end"
_IDENT = "ident"


def _lex(text: str) -> list[tuple[str, str]]:
    """Tokens as ``(kind, literal)``; kinds are the operator literal, ``in``/``notin``,
    ``ident``, ``error`` or ``end``."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i >= n:
            out.append((_END, ""))
            return out
        if text[i] in _SPECIAL:
            buf, last = "", ""
            while i < n and text[i] in _SPECIAL:
                if buf + text[i] in _OPERATOR_TOKENS:
                    buf += text[i]
                    last = buf
                    i += 1
                elif last:
                    break
                else:
                    buf += text[i]
                    i += 1
            if not last:
                out.append((_ERROR, f"error expected: keyword found '{buf}'"))
            else:
                out.append((last, last))
            continue
        start = i
        while i < n and text[i] not in _SPECIAL and text[i] not in _WHITESPACE:
            i += 1
        word = text[start:i]
        out.append((word if word in ("in", "notin") else _IDENT, word))


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _lex(text)
        self.pos = 0

    def peek(self, values: bool = True) -> tuple[str, str]:
        kind, lit = self.tokens[self.pos]
        return (_IDENT if values and kind in ("in", "notin") else kind), lit

    def take(self, values: bool = True) -> tuple[str, str]:
        tok = self.peek(values)
        self.pos += 1
        return tok

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            kind, lit = self.peek()
            if kind == _END:
                return reqs
            if kind not in (_IDENT, "!"):
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                reqs.append(self.requirement())
            except SelectorError as e:
                raise SelectorError(f"unable to parse requirement: {e}") from None
            kind, lit = self.take()
            if kind == _END:
                return reqs
            if kind != ",":
                raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            kind, lit = self.peek()
            if kind not in (_IDENT, "!"):
                raise SelectorError(f"found '{lit}', expected: identifier after ','")

    def requirement(self) -> Requirement:
        kind, key = self.take()
        negated = kind == "!"
        if negated:
            kind, key = self.take()
        if kind != _IDENT:
            raise SelectorError(f"found '{key}', expected: identifier")
        key_errs = names.is_qualified_name(key)
        if key_errs:
            raise SelectorError(f'<nil>: Invalid value: "{key}": ' + "; ".join(key_errs))
        if negated:
            return Requirement(key, _NOT_EXISTS)
        if self.peek()[0] in (_END, ","):
            return Requirement(key, _EXISTS)
        kind, lit = self.take(values=False)
        op = {"in": _IN, "notin": _NOTIN, "=": _EQ, "==": _DEQ, "!=": _NEQ, ">": _GT, "<": _LT}
        if kind not in op:
            raise SelectorError(f"found '{lit}', expected: {_BINARY_OPS}")
        values = self.set_values() if op[kind] in (_IN, _NOTIN) else self.exact_value()
        return _new_requirement(key, op[kind], values)

    def set_values(self) -> list[str]:
        kind, lit = self.take()
        if kind != "(":
            raise SelectorError(f"found '{lit}' expected: '('")
        kind, lit = self.peek()
        if kind == ")":
            self.take()
            return [""]
        if kind not in (_IDENT, ","):
            raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")
        found: set[str] = set()
        while True:
            kind, lit = self.take()
            if kind == _IDENT:
                found.add(lit)
                if self._closes_after_value():
                    break
            elif kind == ",":
                if self._closes_after_comma(found):
                    break
            else:
                raise SelectorError(f"found '{lit}', expected: ',', or identifier")
        self.take()  # ')'
        return sorted(found)

    def _closes_after_value(self) -> bool:
        """After a value in a set: whether ``)`` comes (else a ``,``)."""
        nxt, nlit = self.peek()
        if nxt == ",":
            return False
        if nxt == ")":
            return True
        raise SelectorError(f"found '{nlit}', expected: ',' or ')'")

    def _closes_after_comma(self, found: set[str]) -> bool:
        """After a ``,`` in a set: empty values around it join ``found``; whether ``)``
        comes."""
        if not found:
            found.add("")
        nxt, _ = self.peek()
        if nxt == ")":
            found.add("")
            return True
        if nxt == ",":
            self.take()
            found.add("")
        return False

    def exact_value(self) -> list[str]:
        kind, lit = self.peek()
        if kind in (_END, ","):
            return [""]
        kind, lit = self.take()
        if kind == _IDENT:
            return [lit]
        raise SelectorError(f"found '{lit}', expected: identifier")


def _new_requirement(key: str, op: str, values: list[str]) -> Requirement:
    errs: list[str] = []
    if op in (_GT, _LT):
        for i, v in enumerate(values):
            try:
                int(v, 10)
            except ValueError:
                errs.append(
                    f"values[{i}]: Invalid value: {names.go_quote(v)}: for 'Gt', 'Lt' operators, "
                    "the value must be an integer"
                )
    for i, v in enumerate(values):
        msgs = names.is_label_value(v)
        if msgs:
            errs.append(
                f"values[{i}][{key}]: Invalid value: {names.go_quote(v)}: " + "; ".join(msgs)
            )
    if errs:
        raise SelectorError(errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]")
    return Requirement(key, op, tuple(values))


def parse_label_selector(text: str) -> LabelSelector:
    """Parse the ``labelSelector`` query syntax; raises :class:`SelectorError`."""
    return LabelSelector(_Parser(text).parse())


_EXPR_OPS = {"In": _IN, "NotIn": _NOTIN, "Exists": _EXISTS, "DoesNotExist": _NOT_EXISTS}


def label_selector_from_object(sel: Mapping[str, Any] | None) -> LabelSelector:
    """A metav1.LabelSelector object as a selector: ``None`` matches nothing, ``{}`` everything.

    Raises :class:`SelectorError` for an unknown operator or invalid key/values."""
    if sel is None:
        return LabelSelector(nothing=True)
    reqs: list[Requirement] = []
    for k, v in (sel.get("matchLabels") or {}).items():
        reqs.append(_checked(k, _EQ, [v]))
    for expr in sel.get("matchExpressions") or []:
        operator = expr.get("operator", "")
        op = _EXPR_OPS.get(operator)
        if op is None:
            raise SelectorError(
                f"{names.go_quote(operator)} is not a valid label selector operator"
            )
        reqs.append(_checked(expr.get("key", ""), op, list(expr.get("values") or [])))
    return LabelSelector(reqs)


def _checked(key: str, op: str, values: list[str]) -> Requirement:
    key_errs = names.is_qualified_name(key)
    if key_errs:
        raise SelectorError(f"key: Invalid value: {names.go_quote(key)}: " + "; ".join(key_errs))
    if op in (_IN, _NOTIN) and not values:
        raise SelectorError(
            "values: Invalid value: []string{}: for 'in', 'notin' operators, "
            "values set can't be empty"
        )
    if op in (_EXISTS, _NOT_EXISTS) and values:
        raise SelectorError(
            f"values: Invalid value: {names.go_strings(values)}: values set must be empty for "
            "exists and does not exist"
        )
    return _new_requirement(key, op, values)


def label_selector_to_string(sel: Mapping[str, Any]) -> str:
    """The canonical string of a metav1.LabelSelector (as in a Scale's ``status.selector``)."""
    return str(label_selector_from_object(sel))


# ---------------------------------------------------------------------------
# Field selectors

META_FIELDS = frozenset({"metadata.name", "metadata.namespace"})

_EVENT_FIELDS = frozenset(
    {
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    }
)
#: events.k8s.io spells the involved object ``regarding`` and the component
#: ``reportingController``.
_EVENTS_V1_FIELDS = frozenset(
    f.replace("involvedObject.", "regarding.").replace("reportingComponent", "reportingController")
    for f in _EVENT_FIELDS
)

#: Kinds with their own field label conversion: (group, resource) -> accepted labels.
_CUSTOM_FIELDS: dict[tuple[str, str], frozenset[str]] = {
    ("", "pods"): META_FIELDS
    | {
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.podIPs",
        "status.nominatedNodeName",
        "spec.host",
    },
    ("", "nodes"): frozenset({"metadata.name", "spec.unschedulable"}),
    ("", "namespaces"): frozenset({"metadata.name", "status.phase"}),
    ("", "replicationcontrollers"): META_FIELDS | {"status.replicas"},
    ("apps", "replicasets"): META_FIELDS | {"status.replicas"},
    ("", "events"): META_FIELDS | _EVENT_FIELDS,
    ("events.k8s.io", "events"): META_FIELDS | _EVENTS_V1_FIELDS,
    ("", "secrets"): META_FIELDS | {"type"},
    ("", "services"): META_FIELDS | {"spec.clusterIP", "spec.type"},
    ("batch", "jobs"): META_FIELDS | {"status.successful"},
    ("certificates.k8s.io", "certificatesigningrequests"): META_FIELDS | {"spec.signerName"},
}


def allowed_fields(group: str, resource: str) -> frozenset[str]:
    """The field labels the API accepts in ``fieldSelector`` for a resource."""
    return _CUSTOM_FIELDS.get((group, resource), META_FIELDS)


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    value: str
    equal: bool

    def __str__(self) -> str:
        return f"{self.field}{'=' if self.equal else '!='}{self.value}"


class FieldSelector:
    """A parsed field selector: a conjunction of ``field=value`` / ``field!=value`` terms."""

    def __init__(self, requirements: Iterable[FieldRequirement] = ()) -> None:
        self.requirements = tuple(requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, fields: Mapping[str, str]) -> bool:
        """Absent fields compare as the empty string (as upstream's ``fields.Set.Get``)."""
        return all((fields.get(r.field, "") == r.value) == r.equal for r in self.requirements)

    def exact(self, field: str) -> str | None:
        """The value an ``=`` term requires for ``field``, if any (for indexed lookups)."""
        for r in self.requirements:
            if r.field == field and r.equal:
                return r.value
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def _split_terms(text: str) -> list[str]:
    terms, start, escaped = [], 0, False
    for i, c in enumerate(text):
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _unescape(value: str) -> str:
    out, escaped = [], False
    for c in value:
        if escaped:
            if c not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{c}")
            out.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        elif c in ",=":
            # upstream formats the offending rune with %v, i.e. as its code point
            raise SelectorError(f"invalid field selector: unescaped character in value: {ord(c)}")
        else:
            out.append(c)
    if escaped:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _unknown_field_message(label: str, allowed: frozenset[str]) -> str:
    if allowed == META_FIELDS:
        return (
            f'"{label}" is not a known field selector: only "metadata.name", "metadata.namespace"'
        )
    return f"field label not supported: {label}"


def parse_field_selector(text: str, allowed: Iterable[str]) -> FieldSelector:
    """Parse the ``fieldSelector`` query syntax, accepting only ``allowed`` field labels."""
    allowed_set = frozenset(allowed)
    reqs: list[FieldRequirement] = []
    for term in sorted(_split_terms(text)) if text else []:
        if not term:
            continue
        for i in range(len(term)):
            op = next((o for o in ("!=", "==", "=") if term.startswith(o, i)), None)
            if op is not None:
                label, raw = term[:i], term[i + len(op) :]
                break
        else:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        reqs.append(FieldRequirement(label, _unescape(raw), op != "!="))
    for r in reqs:
        if r.field not in allowed_set:
            raise SelectorError(_unknown_field_message(r.field, allowed_set))
    return FieldSelector(reqs)


def _get(obj: Mapping[str, Any], path: str) -> Any:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _pod_fields(obj: Mapping[str, Any]) -> dict[str, str]:
    ips = _get(obj, "status.podIPs") or []
    pod_ip = ips[0].get("ip", "") if ips and isinstance(ips[0], Mapping) else ""
    out = {
        f: _text(_get(obj, f))
        for f in (
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "status.phase",
            "status.nominatedNodeName",
        )
    }
    out["spec.host"] = out["spec.nodeName"]
    out["spec.hostNetwork"] = _text(bool(_get(obj, "spec.hostNetwork")))
    out["status.podIP"] = _text(pod_ip or _get(obj, "status.podIP"))
    return out


def _core_event_fields(obj: Mapping[str, Any]) -> dict[str, str]:
    out = {f: _text(_get(obj, f)) for f in _EVENT_FIELDS if f != "source"}
    out["source"] = _text(_get(obj, "source.component")) or out["reportingComponent"]
    return out


def _events_v1_fields(obj: Mapping[str, Any]) -> dict[str, str]:
    out = {f: _text(_get(obj, f)) for f in _EVENTS_V1_FIELDS if f != "source"}
    out["source"] = _text(_get(obj, "deprecatedSource.component")) or out["reportingController"]
    return out


_Extractor = Callable[[Mapping[str, Any]], dict[str, str]]


def _simple(*paths: str) -> _Extractor:
    def extract(obj: Mapping[str, Any]) -> dict[str, str]:
        return {p: _text(_get(obj, p)) for p in paths}

    return extract


def _numeric(path: str) -> _Extractor:
    def extract(obj: Mapping[str, Any]) -> dict[str, str]:
        return {path: _text(_get(obj, path) or 0)}

    return extract


_EXTRACTORS: dict[tuple[str, str], _Extractor] = {
    ("", "pods"): _pod_fields,
    ("", "events"): _core_event_fields,
    ("events.k8s.io", "events"): _events_v1_fields,
    ("", "nodes"): lambda o: {"spec.unschedulable": _text(bool(_get(o, "spec.unschedulable")))},
    ("", "namespaces"): _simple("status.phase"),
    ("", "secrets"): _simple("type"),
    ("", "services"): _simple("spec.clusterIP", "spec.type"),
    ("", "replicationcontrollers"): _numeric("status.replicas"),
    ("apps", "replicasets"): _numeric("status.replicas"),
    ("batch", "jobs"): lambda o: {"status.successful": _text(_get(o, "status.succeeded") or 0)},
    ("certificates.k8s.io", "certificatesigningrequests"): _simple("spec.signerName"),
}


def selectable_fields(group: str, resource: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """The field-selector values of an object (``metadata.namespace`` only when it has one)."""
    meta = obj.get("metadata") or {}
    out = {"metadata.name": _text(meta.get("name"))}
    if meta.get("namespace"):
        out["metadata.namespace"] = _text(meta.get("namespace"))
    extract = _EXTRACTORS.get((group, resource))
    if extract is not None:
        out.update(extract(obj))
    return out
