"""edgek.forked: work done in a forked child comes back as a value or as its exception."""

from __future__ import annotations

import os
import sys

import pytest

from edgek.forked import call_in_child


def test_value_and_module_stay_in_the_child() -> None:
    def work() -> tuple[int, bool]:
        import wave  # a module nothing here imports

        assert wave
        return os.getpid(), "wave" in sys.modules

    sys.modules.pop("wave", None)
    pid, imported = call_in_child(work)
    assert pid != os.getpid() and imported
    assert "wave" not in sys.modules


def test_exception_is_raised_in_the_caller() -> None:
    def work() -> None:
        raise ValueError("not a usable private key")

    with pytest.raises(ValueError, match="not a usable private key"):
        call_in_child(work)


def test_a_child_that_dies_is_an_error() -> None:
    def work() -> None:
        os._exit(3)

    with pytest.raises(RuntimeError, match="exit status 3"):
        call_in_child(work)
