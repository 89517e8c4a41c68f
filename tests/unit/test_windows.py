"""Change windows and freezes, judged at moments passed in: weekly local windows across a
summer-time change, freezes winning over windows, and every bad window refused with a sentence."""
from __future__ import annotations

from datetime import datetime

import pytest

from webapp import windows

BERLIN = {"days": ["mon", "tue", "wed", "thu"], "start": "09:00", "end": "16:00", "tz": "Europe/Berlin"}


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_a_window_is_open_on_its_days_between_its_local_times():
    assert windows.judge([BERLIN], [], utc("2026-12-01T08:30:00")).open  # Tue 09:30 in Berlin (UTC+1)
    assert not windows.judge([BERLIN], [], utc("2026-12-01T07:59:00")).open  # 08:59 there
    assert not windows.judge([BERLIN], [], utc("2026-12-01T15:00:00")).open  # 16:00 there: closed
    friday = windows.judge([BERLIN], [], utc("2026-12-04T10:00:00"))
    assert not friday.open and friday.until == utc("2026-12-07T08:00:00")  # Mon 09:00 Berlin
    assert friday.reason == "waiting for the change window: opens Mon 09:00 Europe/Berlin"


def test_a_window_keeps_its_local_hours_across_a_summer_time_change():
    # Berlin moves from UTC+1 to UTC+2 on Sunday 2026-03-29: 09:00 local is 08:00 UTC before, 07:00 after.
    before = windows.judge([BERLIN], [], utc("2026-03-26T08:00:00"))  # Thu 09:00 local
    assert before.open
    weekend = windows.judge([BERLIN], [], utc("2026-03-28T12:00:00"))
    assert weekend.until == utc("2026-03-30T07:00:00")  # Mon 09:00 local, summer time
    assert windows.judge([BERLIN], [], utc("2026-03-30T07:00:00")).open
    assert not windows.judge([BERLIN], [], utc("2026-03-30T06:59:00")).open
    assert not windows.judge([BERLIN], [], utc("2026-03-30T14:00:00")).open  # 16:00 local


def test_no_windows_is_always_open_and_a_freeze_wins_over_every_window():
    assert windows.judge([], [], utc("2026-12-05T03:00:00")).open
    freeze = {"from": "2026-12-01T00:00:00Z", "to": "2026-12-02T00:00:00Z", "reason": "black friday"}
    frozen = windows.judge([BERLIN], [freeze], utc("2026-12-01T09:00:00"))
    assert not frozen.open and frozen.until == utc("2026-12-02T00:00:00")
    assert frozen.reason == "frozen until 2026-12-02T00:00:00Z \u2014 black friday"
    assert windows.judge([], [freeze], utc("2026-12-02T00:00:00")).open  # the end is not frozen


@pytest.mark.parametrize("value, message", [
    ("mon-fri", "must be a list"),
    ([{"days": ["mon"], "start": "09:00", "end": "16:00"}], "with days, start, end and tz"),
    ([{**BERLIN, "days": []}], "non-empty list"),
    ([{**BERLIN, "days": ["monday"]}], "non-empty list"),
    ([{**BERLIN, "start": "9:00"}], "a time like 09:00"),
    ([{**BERLIN, "end": "24:00"}], "a time like 09:00"),
    ([{**BERLIN, "start": "16:00", "end": "09:00"}], "over midnight is two windows"),
    ([{**BERLIN, "tz": "Mars/Olympus"}], "time zone name"),
    ([{**BERLIN, "tz": "../../etc/passwd"}], "time zone name"),
])
def test_bad_windows_are_refused_with_a_sentence(value, message):
    with pytest.raises(windows.WindowError, match=message):
        windows.check_windows(value)


@pytest.mark.parametrize("value, message", [
    ({}, "must be a list"),
    ([{"from": "2026-12-01T00:00:00Z", "to": "2026-12-02T00:00:00Z"}], "with from, to and reason"),
    ([{"from": "2026-12-01", "to": "2026-12-02T00:00:00Z", "reason": "x"}], "a UTC time like"),
    ([{"from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z", "reason": "x"}], "before to"),
    ([{"from": "2026-12-01T00:00:00Z", "to": "2026-12-02T00:00:00Z", "reason": " "}], "reason must say"),
])
def test_bad_freezes_are_refused_with_a_sentence(value, message):
    with pytest.raises(windows.WindowError, match=message):
        windows.check_freezes(value)


def test_checked_windows_and_freezes_come_back_in_one_form():
    assert windows.check_windows([{**BERLIN, "days": ["thu", "mon"]}])[0]["days"] == ["mon", "thu"]
    freeze = {"from": "2026-12-01T00:00:00+00:00Z", "to": "2026-12-02T00:00:00Z", "reason": "a  b"}
    with pytest.raises(windows.WindowError):
        windows.check_freezes([freeze])
    assert windows.check_freezes([{**freeze, "from": "2026-12-01T00:00:00Z"}])[0]["reason"] == "a b"


def test_stored_windows_this_host_cannot_read_start_nothing():
    """Fail closed: a zone a worker's tzdata lacks, or a stored value gone bad, is no window open."""
    moment = datetime(2026, 12, 7, 10, 0)
    lost = [{"days": ["mon"], "start": "09:00", "end": "16:00", "tz": "Nowhere/Atlantis"}]
    verdict = windows.judge(lost, [], moment)
    assert not verdict.open and verdict.until is None
    assert verdict.reason.startswith("waiting: the change windows or freezes cannot be read on this host")
    assert not windows.judge([], [{"from": "soon", "to": "later", "reason": "x"}], moment).open
