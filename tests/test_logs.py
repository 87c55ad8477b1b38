"""Quiet, useful logs: libraries at WARNING unless debug, identical warnings summarized."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from siemgate import logs


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in (*logs.LIBRARY_LOGGERS, "aiokafka")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, value in levels.items():
        logging.getLogger(name).setLevel(value)


def summarizing(clock: Clock) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logs.SummarizingHandler(stream, clock=clock)
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger(f"siemgate.test.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in stream.getvalue().splitlines()]


def test_library_loggers_are_quiet_unless_debug(restore_logging: None) -> None:
    logs.configure("info")
    assert logging.getLogger().level == logging.INFO
    for name in ("httpx", "httpcore", "uvicorn.access"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        assert logging.getLogger(name).isEnabledFor(logging.WARNING), name
    assert not logging.getLogger("aiokafka").isEnabledFor(logging.ERROR)
    logs.set_level("debug")  # a hot reload to debug
    for name in ("httpx", "httpcore", "uvicorn.access", "aiokafka"):
        assert logging.getLogger(name).isEnabledFor(logging.DEBUG), name
    logs.set_level("info")
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)


def test_identical_warnings_are_written_once_a_minute_with_a_count() -> None:
    clock = Clock()
    logger, stream = summarizing(clock)
    for i in range(500):  # a 401 flood
        clock.now = i * 0.1
        logger.warning("refused a request with a missing or wrong auth header (401)", extra={"peer": f"p{i}"})
    logger.warning("another warning")  # different: written
    assert [line["message"] for line in lines(stream)] == [
        "refused a request with a missing or wrong auth header (401)", "another warning"]
    assert lines(stream)[0]["peer"] == "p0"  # the first one, whole
    clock.now = 61.0
    logger.warning("refused a request with a missing or wrong auth header (401)", extra={"peer": "late"})
    written = lines(stream)
    summary, again = written[2], written[3]
    assert summary["message"] == "499 more like this in the last 61 s: refused a request with a missing or wrong " \
                                 "auth header (401)"
    assert summary["repeated"] == 499 and summary["level"] == "warning"
    assert again["peer"] == "late"  # a new window starts with a whole line


def test_a_summary_comes_with_the_next_line_of_any_kind_after_the_minute() -> None:
    clock = Clock()
    logger, stream = summarizing(clock)
    for _ in range(3):
        logger.error("sink soc is unavailable; retrying")
    clock.now = 60.0
    logger.error("something else")
    assert [line["message"] for line in lines(stream)] == [
        "sink soc is unavailable; retrying", "2 more like this in the last 60 s: sink soc is unavailable; retrying",
        "something else"]


def test_info_lines_and_different_loggers_are_never_summarized() -> None:
    clock = Clock()
    logger, stream = summarizing(clock)
    for _ in range(3):
        logger.info("sink settings applied")
    logger.warning("same text")
    other = logging.getLogger(logger.name + ".other")
    other.setLevel(logging.DEBUG)  # propagates into the same handler
    other.propagate = True
    other.warning("same text")
    assert [line["message"] for line in lines(stream)] == ["sink settings applied"] * 3 + ["same text"] * 2


def test_an_info_line_after_the_minute_or_the_exit_brings_the_count() -> None:
    clock = Clock()
    logger, stream = summarizing(clock)
    for _ in range(4):
        logger.warning("cannot poll HEC acknowledgements; polling again")
    clock.now = 75.0
    logger.info("forwarder started")
    for _ in range(3):
        logger.warning("sink soc is unavailable; retrying")
    clock.now = 80.0
    logger.handlers[0].close()  # at exit: what was left out is counted, window over or not
    assert [line["message"] for line in lines(stream)] == [
        "cannot poll HEC acknowledgements; polling again",
        "3 more like this in the last 75 s: cannot poll HEC acknowledgements; polling again",
        "forwarder started",
        "sink soc is unavailable; retrying",
        "2 more like this in the last 5 s: sink soc is unavailable; retrying",
    ]
