"""Progress: every item passes through, and without a terminal each step is one log line."""

import logging

from medgan_core.progress import track


def test_without_a_terminal_each_step_is_one_log_line(caplog, monkeypatch):
    monkeypatch.setenv("CI", "1")  # what CI sets: no bar, ever
    with caplog.at_level(logging.INFO, logger="medgan_core.progress"):
        assert list(track(iter("abc"), description="scoring", total=3)) == ["a", "b", "c"]
    assert [r.getMessage() for r in caplog.records] == ["scoring: 1/3 done", "scoring: 2/3 done", "scoring: 3/3 done"]


def test_the_total_defaults_to_the_length_and_an_interactive_bar_passes_items_through(monkeypatch, caplog):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("MEDGAN_PROGRESS", "0")
    with caplog.at_level(logging.INFO, logger="medgan_core.progress"):
        assert list(track([1, 2], description="rounds")) == [1, 2]
    assert caplog.records[-1].getMessage() == "rounds: 2/2 done"
    monkeypatch.setenv("MEDGAN_PROGRESS", "1")
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    assert list(track(range(4), description="bar")) == [0, 1, 2, 3]
