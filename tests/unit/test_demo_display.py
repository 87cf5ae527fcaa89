"""The `soniq demo` status line: redrawn in place on a terminal, plain lines otherwise."""

from __future__ import annotations

import io

import pytest

from soniq.cli.demo import _Display
from soniq.dev.demo import ONE_OFF_JOBS, PERIODIC_RUNS, DemoProgress


class FakeStdout(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def snapshots() -> list[DemoProgress]:
    running = [DemoProgress(t / 4, 5, 1, 10, 0, 0) for t in range(9)]  # 0.0s .. 2.0s
    finished = DemoProgress(2.2, 0, 0, ONE_OFF_JOBS - 1 + PERIODIC_RUNS, 1, PERIODIC_RUNS)
    assert finished.finished and not running[-1].finished
    return [*running, finished]


def show_all(monkeypatch: pytest.MonkeyPatch, tty: bool) -> str:
    out = FakeStdout(tty)
    monkeypatch.setattr("sys.stdout", out)
    display = _Display()
    for snapshot in snapshots():
        display.show(snapshot)
    return out.getvalue()


def test_a_terminal_gets_one_line_redrawn(monkeypatch: pytest.MonkeyPatch) -> None:
    text = show_all(monkeypatch, tty=True)
    assert text.count("\r") == 10  # every snapshot redraws
    assert text.count("\n") == 1  # and the line ends once, when the demo has finished
    assert text.endswith("\n")


def test_a_pipe_gets_a_plain_line_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    text = show_all(monkeypatch, tty=False)
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    # 0.0s, 1.0s, 2.0s (a new second each), then the finished state.
    assert [line.split()[0] for line in lines] == ["0.0s", "1.0s", "2.0s", "2.2s"]
