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


EVERY_DAY = {**BERLIN, "days": list(windows.DAYS)}


def test_a_window_keeps_its_local_hours_across_the_autumn_change():
    # Berlin moves from UTC+2 back to UTC+1 at 03:00 on Sunday 2026-10-25: 09:00 local is 07:00 UTC
    # on the Saturday, 08:00 UTC on the Sunday and after.
    assert windows.judge([EVERY_DAY], [], utc("2026-10-24T07:00:00")).open  # Sat 09:00 summer time
    assert not windows.judge([EVERY_DAY], [], utc("2026-10-24T14:00:00")).open  # Sat 16:00
    saturday_night = windows.judge([EVERY_DAY], [], utc("2026-10-24T20:00:00"))
    assert saturday_night.until == utc("2026-10-25T08:00:00")  # Sun 09:00 winter time, not 07:00 UTC
    assert saturday_night.reason == "waiting for the change window: opens Sun 09:00 Europe/Berlin"
    assert not windows.judge([EVERY_DAY], [], utc("2026-10-25T07:30:00")).open  # Sun 08:30 local
    assert windows.judge([EVERY_DAY], [], utc("2026-10-25T08:00:00")).open
    assert windows.judge([EVERY_DAY], [], utc("2026-10-25T14:59:00")).open  # 15:59 local
    assert not windows.judge([EVERY_DAY], [], utc("2026-10-25T15:00:00")).open  # 16:00 local
    assert windows.judge([EVERY_DAY], [], utc("2026-10-26T14:30:00")).open  # Mon 15:30
    assert windows.judge([EVERY_DAY], [], utc("2026-10-25T16:00:00")).until == utc("2026-10-26T08:00:00")


NIGHT = {"days": list(windows.DAYS), "start": "02:30", "end": "05:00", "tz": "Europe/Berlin"}


def test_a_window_starting_in_the_skipped_hour_opens_when_the_clocks_jump_past_it():
    # On 2026-03-29 Berlin's clocks go from 02:00 straight to 03:00 (01:00 UTC): 02:30 never comes,
    # so the window opens at the jump, 03:00 local, and still ends at 05:00 local (03:00 UTC).
    verdict = windows.judge([NIGHT], [], utc("2026-03-28T23:00:00"))
    assert verdict.until == utc("2026-03-29T01:00:00")
    assert verdict.reason == "waiting for the change window: opens Sun 03:00 Europe/Berlin"
    assert not windows.judge([NIGHT], [], utc("2026-03-29T00:59:59")).open  # 01:59:59 winter time
    assert windows.judge([NIGHT], [], utc("2026-03-29T01:00:00")).open
    assert windows.judge([NIGHT], [], utc("2026-03-29T02:59:00")).open
    assert not windows.judge([NIGHT], [], utc("2026-03-29T03:00:00")).open
    # A window wholly inside the skipped hour does not open that day: it waits for the next one.
    skipped = {**NIGHT, "start": "02:00", "end": "02:45"}
    assert not windows.judge([skipped], [], utc("2026-03-29T01:00:00")).open
    assert windows.judge([skipped], [], utc("2026-03-28T23:00:00")).until == utc("2026-03-30T00:00:00")


def test_a_window_starting_in_the_repeated_hour_opens_at_its_first_pass_and_stays_open():
    # On 2026-10-25 Berlin's clocks read 02:00-03:00 twice (00:00-01:00 UTC in summer time, then
    # 01:00-02:00 UTC in winter time): the window opens at the first 02:30 and stays open through
    # the repeat until 05:00 winter time (04:00 UTC).
    verdict = windows.judge([NIGHT], [], utc("2026-10-24T23:00:00"))
    assert verdict.until == utc("2026-10-25T00:30:00")
    assert verdict.reason == "waiting for the change window: opens Sun 02:30 Europe/Berlin"
    assert not windows.judge([NIGHT], [], utc("2026-10-25T00:29:00")).open
    for moment in ("2026-10-25T00:30:00", "2026-10-25T01:00:00", "2026-10-25T01:15:00", "2026-10-25T03:59:00"):
        assert windows.judge([NIGHT], [], utc(moment)).open, moment  # 01:15 UTC reads 02:15 the second time
    assert not windows.judge([NIGHT], [], utc("2026-10-25T04:00:00")).open
    assert windows.judge([NIGHT], [], utc("2026-10-25T04:00:00")).until == utc("2026-10-26T01:30:00")


def test_several_windows_are_open_when_any_is_and_the_next_opening_is_the_earliest():
    morning_berlin = {"days": ["mon"], "start": "09:00", "end": "10:00", "tz": "Europe/Berlin"}
    evening_tokyo = {"days": ["mon"], "start": "18:00", "end": "19:00", "tz": "Asia/Tokyo"}  # 09:00 UTC
    later_utc = {"days": ["tue"], "start": "01:00", "end": "02:00", "tz": "UTC"}
    every = [later_utc, evening_tokyo, morning_berlin]
    assert windows.judge(every, [], utc("2026-12-07T08:30:00")).open  # Mon 09:30 Berlin
    assert windows.judge(every, [], utc("2026-12-07T09:30:00")).open  # Mon 18:30 Tokyo
    assert windows.judge(every, [], utc("2026-12-08T01:30:00")).open  # Tue 01:30 UTC
    between = windows.judge(every, [], utc("2026-12-07T10:30:00"))  # after Tokyo's, before Tuesday's
    assert not between.open and between.until == utc("2026-12-08T01:00:00")
    assert between.reason == "waiting for the change window: opens Tue 01:00 UTC"
    sunday = windows.judge(every, [], utc("2026-12-06T12:00:00"))
    assert sunday.until == utc("2026-12-07T08:00:00")  # Berlin's Monday morning, the first of the three
    assert sunday.reason == "waiting for the change window: opens Mon 09:00 Europe/Berlin"
    assert windows.next_opening(every, utc("2026-12-07T08:30:00")) == (evening_tokyo, utc("2026-12-07T09:00:00"))


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


# -- the settings form's lines ---------------------------------------------------------------------

def test_window_lines_read_days_as_lists_or_ranges_and_come_back_as_they_were_written():
    raw = "mon-thu 09:00-16:00 Europe/Berlin\n\n  sat,sun 10:00-12:00 UTC  \nfri-mon 01:00-02:00 UTC"
    found = windows.windows_from_lines(raw, "Change windows", nullable=True)
    assert found == [BERLIN, {"days": ["sat", "sun"], "start": "10:00", "end": "12:00", "tz": "UTC"},
                     {"days": ["fri", "sat", "sun", "mon"], "start": "01:00", "end": "02:00", "tz": "UTC"}]
    assert windows.check_windows(found)[2]["days"] == ["mon", "fri", "sat", "sun"]
    assert windows.windows_from_lines(windows.window_lines([BERLIN]), "w", nullable=False) == [BERLIN]
    assert windows.windows_from_lines("MON,Wed 09:00-10:00 UTC", "w", nullable=False)[0]["days"] == ["mon", "wed"]


def test_always_and_an_empty_box_mean_always_open_or_the_projects_windows():
    assert windows.windows_from_lines("always", "w", nullable=True) == []
    assert windows.windows_from_lines("  always \n", "w", nullable=False) == []
    assert windows.windows_from_lines(" \n ", "w", nullable=True) is None  # the project's windows
    assert windows.windows_from_lines("", "w", nullable=False) == []  # a project: always open
    assert windows.window_lines([]) == "always" and windows.window_lines(None) == ""
    with pytest.raises(windows.WindowError, match="line 2"):
        windows.windows_from_lines("mon 09:00-10:00 UTC\nalways", "w", nullable=True)


@pytest.mark.parametrize("raw, nullable, message", [
    ("mon-fri 09:00 Europe/Berlin", True, r"Change windows, line 1: write a window as days, hours and a time zone, "
                                         r"e\.g\. mon-fri 09:00-16:00 Europe/Berlin \(or always\)\."),
    ("mon 09:00-16:00 UTC\nmon 09:00 16:00 UTC", False, r"line 2: .*Europe/Berlin\.$"),
    ("mon 09:00-16:00 Europe/Berlin extra", True, "line 1: write a window"),
    ("monday 09:00-16:00 UTC", True, r"line 1: days are mon, tue, wed, thu, fri, sat, sun, separated by commas "
                                     r"or as a range like mon-fri\."),
    ("mon-xyz 09:00-16:00 UTC", True, "line 1: days are"),
])
def test_a_window_line_that_cannot_be_read_says_which_line_and_how_to_write_it(raw, nullable, message):
    with pytest.raises(windows.WindowError, match=message):
        windows.windows_from_lines(raw, "Change windows", nullable=nullable)


def test_freeze_lines_keep_the_whole_reason_and_come_back_as_they_were_written():
    raw = "2026-12-20T00:00:00Z 2027-01-04T00:00:00Z year-end  freeze, no deploys\n\n"
    found = windows.freezes_from_lines(raw, "Freezes")
    assert found == [{"from": "2026-12-20T00:00:00Z", "to": "2027-01-04T00:00:00Z",
                      "reason": "year-end  freeze, no deploys"}]
    checked = windows.check_freezes(found)
    assert checked[0]["reason"] == "year-end freeze, no deploys"
    assert windows.freezes_from_lines(windows.freeze_lines(checked), "Freezes") == checked
    assert windows.freezes_from_lines(" \n", "Freezes") == []
    with pytest.raises(windows.WindowError, match=r"Freezes, line 2: write a freeze as its start, its end \(UTC\) "
                                                  r"and why"):
        windows.freezes_from_lines(f"{raw.strip()}\n2026-12-20T00:00:00Z 2027-01-04T00:00:00Z", "Freezes")
