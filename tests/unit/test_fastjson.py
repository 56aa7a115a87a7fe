"""edgek.fastjson: orjson where it can, the standard library's behaviour where it cannot."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

import pytest

from edgek import fastjson


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2.5, True, None, "x"], "b": {"c": ""}},
        {"big": 2**70, "neg": -(2**64)},  # beyond 64 bits: the standard library encodes
        {1: "non-string key"},
        {"s": "lone \ud800 surrogate"},
    ],
)
def test_dumps_reads_back_as_the_standard_library_reads_it(value: Any) -> None:
    out = fastjson.dumps(value)
    assert isinstance(out, bytes)
    assert json.loads(out) == json.loads(json.dumps(value))


def test_dumps_is_compact_and_utf8() -> None:
    assert fastjson.dumps({"a": [1, {"b": "é"}]}) == '{"a":[1,{"b":"é"}]}'.encode()


@pytest.mark.parametrize(
    "text",
    [b'{"a":1,"a":2}', b' [1, 2.0, "x"] ', b'{"a":NaN}', b'{"a":"\\ud800"}', b"\xef\xbb\xbf{}"],
)
def test_loads_accepts_what_the_standard_library_accepts(text: bytes) -> None:
    assert repr(fastjson.loads(text)) == repr(json.loads(text))


@pytest.mark.parametrize("text", [b'{"a":', b"{'a':1}", b'{"a":"\xff"}', b""])
def test_loads_rejects_with_the_standard_library_error(text: bytes) -> None:
    with pytest.raises(ValueError) as caught:
        fastjson.loads(text)
    with pytest.raises(ValueError) as expected:
        json.loads(text)
    assert str(caught.value) == str(expected.value)


def test_dumps_holds_no_more_memory_than_its_text() -> None:
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        kept = [fastjson.dumps({"i": i, "s": "x" * 100}) for i in range(200)]
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "lineno"))
    finally:
        tracemalloc.stop()
    assert grown < 200 * 400, grown / len(kept)  # ~150 bytes each, not kilobytes
