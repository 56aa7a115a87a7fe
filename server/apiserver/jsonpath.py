"""A small JSONPath evaluator with kubectl's (client-go ``util/jsonpath``) syntax.

Used for CRD ``additionalPrinterColumns``. Supported: an optional ``{...}`` wrapper and
leading ``$``; ``.field``; ``['field']`` / ``["a","b"]``; ``.*`` and ``[*]``; ``[n]``
(negative counts from the end) and unions ``[0,2]``; slices ``[start:end:step]``;
recursive descent ``..field``; filters ``[?(@.path)]`` and ``[?(@.path OP value)]`` with
``== != < > <= >=`` against a quoted string, number, ``true``/``false`` or another
``@`` path. Missing keys and out-of-range indexes simply yield nothing, as with
client-go's ``AllowMissingKeys(true)``.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from edgek.gofloat import go_float

_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
# Characters that end a bare field name.
_FIELD_END = frozenset(".[]{}()=<>!, \t\n'\"@$")


class JSONPathError(ValueError):
    """The expression is not valid JSONPath."""


@dataclass(frozen=True)
class _Field:
    names: tuple[str, ...]


@dataclass(frozen=True)
class _Wildcard:
    pass


@dataclass(frozen=True)
class _Descend:
    pass


@dataclass(frozen=True)
class _Index:
    indexes: tuple[int, ...]


@dataclass(frozen=True)
class _Slice:
    start: int | None
    end: int | None
    step: int | None


@dataclass(frozen=True)
class _Literal:
    value: Any


@dataclass(frozen=True)
class _Filter:
    left: JSONPath | _Literal
    op: str | None  # None: existence test on ``left``
    right: JSONPath | _Literal | None


_Step = _Field | _Wildcard | _Descend | _Index | _Slice | _Filter


class JSONPath:
    """A parsed expression; :meth:`find` evaluates it against decoded JSON."""

    def __init__(self, steps: tuple[_Step, ...]) -> None:
        self._steps = steps

    def find(self, data: Any) -> list[Any]:
        """Every value the expression selects, in document order."""
        current = [data]
        for step in self._steps:
            current = [out for value in current for out in _apply(step, value)]
        return current


def compile_path(expression: str) -> JSONPath:
    """Parse ``expression`` (e.g. ``.spec.cronSpec`` or ``{.status.replicas}``)."""
    text = expression.strip()
    if text.startswith("{"):
        if not text.endswith("}"):
            raise JSONPathError(f"unclosed action in {expression!r}")
        text = text[1:-1].strip()
    if text.startswith("$"):
        text = text[1:]
    return _Parser(text, expression).parse_path()


def find(expression: str, data: Any) -> list[Any]:
    """Evaluate ``expression`` against ``data``; see :meth:`JSONPath.find`."""
    return compile_path(expression).find(data)


def to_text(value: Any) -> str:
    """The text kubectl's JSONPath printer writes for one value.

    Maps and lists print as compact JSON with sorted keys; scalars print bare, floats
    the way Go's ``%v`` does.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if value is None:
        return "null"
    encoded = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        encoded = encoded.replace(char, escape)
    return encoded.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _apply(step: _Step, value: Any) -> Iterator[Any]:
    """The values one step selects from one input value."""
    if isinstance(step, _Field):
        if isinstance(value, dict):
            yield from (value[name] for name in step.names if name in value)
    elif isinstance(step, _Wildcard):
        if isinstance(value, dict):
            yield from (value[key] for key in sorted(value))
        elif isinstance(value, list):
            yield from value
    elif isinstance(step, _Descend):
        yield from _descendants(value)
    elif isinstance(value, list):
        yield from _select_items(step, value)


def _select_items(step: _Index | _Slice | _Filter, items: list[Any]) -> Iterator[Any]:
    """The elements of a list that an index, slice or filter step selects."""
    if isinstance(step, _Index):
        for index in step.indexes:
            if -len(items) <= index < len(items):
                yield items[index]
    elif isinstance(step, _Slice):
        yield from items[step.start : step.end : step.step]
    else:
        yield from (item for item in items if _matches(step, item))


def _descendants(value: Any) -> Iterator[Any]:
    """``value`` and everything nested inside it, depth first."""
    yield value
    children = (
        [value[k] for k in sorted(value)]
        if isinstance(value, dict)
        else value
        if isinstance(value, list)
        else []
    )
    for child in children:
        yield from _descendants(child)


def _operand(side: JSONPath | _Literal, item: Any) -> list[Any]:
    return [side.value] if isinstance(side, _Literal) else side.find(item)


def _matches(step: _Filter, item: Any) -> bool:
    """Whether a list element passes a ``[?(...)]`` filter."""
    lefts = _operand(step.left, item)
    if step.op is None or step.right is None:
        return bool(lefts)
    rights = _operand(step.right, item)
    if not lefts or not rights:
        return False
    left, right = lefts[0], rights[0]
    if not _comparable(left, right):
        return False
    return _OPERATORS[step.op](left, right)


def _comparable(left: Any, right: Any) -> bool:
    """Go's template comparison only relates values of the same basic kind."""
    numbers = (int, float)
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool)
    if isinstance(left, numbers) and isinstance(right, numbers):
        return True
    return isinstance(left, str) and isinstance(right, str)


class _Parser:
    """Recursive-descent parser over one expression string."""

    def __init__(self, text: str, original: str) -> None:
        self.text = text
        self.pos = 0
        self.original = original

    def error(self, message: str) -> JSONPathError:
        return JSONPathError(f"{message} in JSONPath {self.original!r}")

    def parse_path(self) -> JSONPath:
        steps: list[_Step] = []
        text = self.text
        while self.pos < len(text):
            char = text[self.pos]
            if text.startswith("..", self.pos):
                self.pos += 2
                steps.append(_Descend())
                if self.pos < len(text) and text[self.pos] != "[":
                    steps.append(self._dotted())
            elif char == ".":
                self.pos += 1
                if self.pos == len(text) and not steps:
                    break  # a lone "." selects the root
                steps.append(self._dotted())
            elif char == "[":
                steps.append(self._bracket())
            else:
                raise self.error(f"unexpected {char!r} at {self.pos}")
        return JSONPath(tuple(steps))

    def _dotted(self) -> _Field | _Wildcard:
        """The part after a dot: ``*`` or a field name (``\\`` escapes one character)."""
        text = self.text
        if text.startswith("*", self.pos):
            self.pos += 1
            return _Wildcard()
        name: list[str] = []
        while self.pos < len(text) and text[self.pos] not in _FIELD_END:
            if text[self.pos] == "\\" and self.pos + 1 < len(text):
                self.pos += 1
            name.append(text[self.pos])
            self.pos += 1
        if not name:
            raise self.error(f"missing field name at {self.pos}")
        return _Field(("".join(name),))

    def _bracket(self) -> _Step:
        """A ``[...]`` step; ``self.pos`` is at the opening bracket."""
        end = _closing(self.text, self.pos)
        if end < 0:
            raise self.error("unclosed [")
        inner = self.text[self.pos + 1 : end].strip()
        self.pos = end + 1
        if inner == "*":
            return _Wildcard()
        if inner.startswith("?"):
            body = inner[1:].strip()
            if not (body.startswith("(") and body.endswith(")")):
                raise self.error(f"malformed filter [{inner}]")
            return self._filter(body[1:-1].strip())
        parts = [part.strip() for part in _split_top(inner, ",")]
        if all(len(p) >= 2 and p[0] == p[-1] and p[0] in "'\"" for p in parts):
            return _Field(tuple(p[1:-1] for p in parts))
        if len(parts) == 1 and ":" in parts[0]:
            return self._slice(parts[0])
        try:
            return _Index(tuple(int(p) for p in parts))
        except ValueError:
            raise self.error(f"invalid array index [{inner}]") from None

    def _slice(self, text: str) -> _Slice:
        pieces = text.split(":")
        if len(pieces) > 3:
            raise self.error(f"invalid slice [{text}]")
        try:
            bounds = [int(p) if p.strip() else None for p in pieces]
        except ValueError:
            raise self.error(f"invalid slice [{text}]") from None
        bounds += [None] * (3 - len(bounds))
        if bounds[2] == 0:
            raise self.error("slice step cannot be zero")
        return _Slice(bounds[0], bounds[1], bounds[2])

    def _filter(self, body: str) -> _Filter:
        found = _find_operator(body)
        if found is None:
            return _Filter(self._operand(body), None, None)
        at, op = found
        left = self._operand(body[:at].strip())
        right = self._operand(body[at + len(op) :].strip())
        return _Filter(left, op, right)

    def _operand(self, text: str) -> JSONPath | _Literal:
        if text.startswith("@"):
            return _Parser(text[1:], self.original).parse_path()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
            return _Literal(text[1:-1])
        if text in ("true", "false"):
            return _Literal(text == "true")
        try:
            return _Literal(float(text) if any(c in text for c in ".eE") else int(text))
        except ValueError:
            raise self.error(f"unrecognized filter operand {text!r}") from None


def _closing(text: str, start: int) -> int:
    """Index of the ``]`` matching the ``[`` at ``start``, skipping quotes; -1 if none."""
    depth = 0
    quote = ""
    for index in range(start, len(text)):
        char = text[index]
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
            if depth == 0:
                return index if char == "]" else -1
    return -1


def _split_top(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside quotes."""
    parts: list[str] = []
    quote = ""
    current: list[str] = []
    for char in text:
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == separator:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _find_operator(body: str) -> tuple[int, str] | None:
    """Position and text of the first comparison operator outside quotes."""
    quote = ""
    index = 0
    while index < len(body):
        char = body[index]
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        else:
            for op in ("==", "!=", "<=", ">=", "<", ">"):
                if body.startswith(op, index):
                    return index, op
        index += 1
    return None
