"""The command line's log lines: logfmt, with journald's priority prefix under systemd."""

from __future__ import annotations

import logging
import re

from edgek.cmd.common import LogfmtFormatter


def _record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("edgek.server", level, __file__, 1, message, None, None)


def test_terminal_lines_carry_time_level_logger_and_quoted_message() -> None:
    line = LogfmtFormatter(journald=False).format(_record('ready: url="x"\nnext'))
    assert re.fullmatch(
        r"time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=info logger=edgek.server "
        r'msg="ready: url=\\"x\\"\\nnext"',
        line,
    ), line


def test_journald_lines_carry_the_priority_instead_of_the_time() -> None:
    formatter = LogfmtFormatter(journald=True)
    assert formatter.format(_record("started")) == "<6>level=info logger=edgek.server msg=started"
    warning = formatter.format(_record("slow", logging.WARNING))
    assert warning.startswith("<4>level=warning ")
    assert formatter.format(_record("x", logging.ERROR)).startswith("<3>level=error ")
