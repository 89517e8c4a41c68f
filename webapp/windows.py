"""Change windows and freezes: when a release may start applying (issue 14).

A window is weekly and local to a named time zone, {"days": ["mon", …], "start": "09:00",
"end": "16:00", "tz": "Europe/Berlin"}: 09:00–16:00 there on those days, whatever the offset
that day (summer time included). A freeze is one interval in UTC, {"from": "…Z", "to": "…Z",
"reason": "…"}. No windows means always open; a freeze closes whatever windows say.

Only pure functions of the moment they are given, so tests pass times in and nothing sleeps.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
MAX_WINDOWS = 20
MAX_FREEZES = 50
MAX_REASON = 500
EXAMPLE_WINDOW = '{"days": ["mon", "tue"], "start": "09:00", "end": "16:00", "tz": "Europe/Berlin"}'
EXAMPLE_FREEZE = '{"from": "2026-12-20T00:00:00Z", "to": "2027-01-04T00:00:00Z", "reason": "year-end freeze"}'


class WindowError(ValueError):
    """A sentence saying what is wrong with some windows or freezes and what to do."""


# -- checking what a client sends ------------------------------------------------------------------

def check_windows(value: object, what: str = "change_windows") -> list[dict]:
    if not isinstance(value, list):
        raise WindowError(f"{what} must be a list of windows like [{EXAMPLE_WINDOW}], or [] for always open.")
    if len(value) > MAX_WINDOWS:
        raise WindowError(f"{what} holds {len(value)} windows; at most {MAX_WINDOWS} are allowed.")
    return [_check_window(window, f"{what}[{index}]") for index, window in enumerate(value)]


def _check_window(window: object, where: str) -> dict:
    if not isinstance(window, dict) or set(window) != {"days", "start", "end", "tz"}:
        raise WindowError(f"{where} must be an object with days, start, end and tz, like {EXAMPLE_WINDOW}.")
    days = window["days"]
    if not isinstance(days, list) or not days or any(day not in DAYS for day in days):
        raise WindowError(f"{where}: days must be a non-empty list of {', '.join(DAYS)}.")
    start, end = (_clock(window[key], f"{where}: {key}") for key in ("start", "end"))
    if start >= end:
        raise WindowError(f"{where}: start must be before end on the same day (a window over midnight is "
                          "two windows).")
    _zone(window["tz"], f"{where}: tz")
    return {"days": [day for day in DAYS if day in days], "start": window["start"], "end": window["end"],
            "tz": window["tz"]}


def _clock(value: object, where: str) -> time:
    match = CLOCK.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise WindowError(f"{where} must be a time like 09:00 (24 hours).")
    return time(int(match.group(1)), int(match.group(2)))


def _zone(name: object, where: str) -> ZoneInfo:
    if not isinstance(name, str) or name not in _zones():
        raise WindowError(f"{where} must be a time zone name like Europe/Berlin or UTC.")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise WindowError(f"{where} must be a time zone name like Europe/Berlin or UTC.") from None


_ZONES: set[str] = set()


# Names whose rules are whatever one host says, not a place: the web and the workers could
# judge the same window differently.
HOST_ZONES = {"localtime", "Factory"}


def _zones() -> set[str]:
    if not _ZONES:
        _ZONES.update((available_timezones() - HOST_ZONES) | {"UTC"})
    return _ZONES


def check_freezes(value: object, what: str = "freezes") -> list[dict]:
    if not isinstance(value, list):
        raise WindowError(f"{what} must be a list of freezes like [{EXAMPLE_FREEZE}], or [] for none.")
    if len(value) > MAX_FREEZES:
        raise WindowError(f"{what} holds {len(value)} freezes; at most {MAX_FREEZES} are allowed.")
    return [_check_freeze(freeze, f"{what}[{index}]") for index, freeze in enumerate(value)]


def _check_freeze(freeze: object, where: str) -> dict:
    if not isinstance(freeze, dict) or set(freeze) != {"from", "to", "reason"}:
        raise WindowError(f"{where} must be an object with from, to and reason, like {EXAMPLE_FREEZE}.")
    start, end = (_instant(freeze[key], f"{where}: {key}") for key in ("from", "to"))
    if start >= end:
        raise WindowError(f"{where}: from must be before to.")
    reason = freeze["reason"]
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON:
        raise WindowError(f"{where}: reason must say in at most {MAX_REASON} characters why nothing may start.")
    return {"from": _iso(start), "to": _iso(end), "reason": " ".join(reason.split())}


def _instant(value: object, where: str) -> datetime:
    """A UTC moment written like 2026-12-20T00:00:00Z; naive UTC, like every stored time."""
    if isinstance(value, str) and value.endswith("Z"):
        try:
            return datetime.fromisoformat(value[:-1] + "+00:00").astimezone(UTC).replace(tzinfo=None)
        except ValueError:
            pass
    raise WindowError(f"{where} must be a UTC time like 2026-12-20T00:00:00Z.")


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds") + "Z"  # four-digit years, unlike strftime's %Y


# -- judging a moment ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    """Whether a release may start applying at a moment; if not, why and until when."""

    open: bool
    reason: str = ""
    until: datetime | None = None  # naive UTC; None: no window will open (or none is known)


def judge(windows: list[dict], freezes: list[dict], now: datetime) -> Verdict:
    """May a release start at `now` (naive UTC)? A freeze wins over every window. Fails closed:
    stored settings this host cannot read (a time zone its tzdata lacks) start nothing."""
    try:
        return _judge(windows, freezes, now)
    except (WindowError, ZoneInfoNotFoundError, KeyError, TypeError, ValueError) as error:
        return Verdict(False, f"waiting: the change windows or freezes cannot be read on this host ({error}); "
                              "correct them in the settings", None)


def _judge(windows: list[dict], freezes: list[dict], now: datetime) -> Verdict:
    for freeze in freezes:
        start, end = _instant(freeze["from"], "from"), _instant(freeze["to"], "to")
        if start <= now < end:
            return Verdict(False, f"frozen until {_iso(end)} \u2014 {freeze['reason']}", end)
    if not windows or any(_inside(window, now) for window in windows):
        return Verdict(True)
    opening = next_opening(windows, now)
    if opening is None:
        return Verdict(False, "waiting for a change window; none will open", None)
    window, moment = opening
    local = moment.replace(tzinfo=UTC).astimezone(ZoneInfo(window["tz"]))
    return Verdict(False, f"waiting for the change window: opens {local:%a %H:%M} {window['tz']}", moment)


def _inside(window: dict, now: datetime) -> bool:
    local_day = now.replace(tzinfo=UTC).astimezone(ZoneInfo(window["tz"])).date()
    # The day before too: where clocks go back over midnight, a day's window can end on the next date.
    for day in (local_day, local_day - timedelta(days=1)):
        if DAYS[day.weekday()] in window["days"]:
            start, end = _interval(window, day)
            if start <= now < end:
                return True
    return False


def _interval(window: dict, day: date) -> tuple[datetime, datetime]:
    """The window on `day` as naive UTC [start, end): from the first moment the local clock reads
    its start to the first moment it reads its end. Empty when both fall in the same skipped hour."""
    zone = ZoneInfo(window["tz"])
    return (_first_reading(day, _clock(window["start"], "start"), zone),
            _first_reading(day, _clock(window["end"], "end"), zone))


def _first_reading(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """The first moment (naive UTC) at which the clocks in `zone` read `clock` or later on `day`.
    Local wall-clock time, whatever that day's offset: 09:00 is 09:00 in summer and winter. A time
    the clocks pass twice (they go back) is its first pass; a time they skip (they go forward) is
    the moment they jump past it."""
    wall = datetime.combine(day, clock)
    moment = wall.replace(tzinfo=zone).astimezone(UTC)  # fold=0: the first pass of a repeated time
    if moment.astimezone(zone).replace(tzinfo=None) == wall:
        return moment.replace(tzinfo=None)
    # Skipped: read with the offset after the jump it lies before the jump, with the one before it
    # lies after. The jump is the first second in between whose local reading is past `wall`.
    before, after = wall.replace(tzinfo=zone, fold=1).astimezone(UTC), moment
    while after - before > timedelta(seconds=1):
        middle = before + (after - before) / 2
        if middle.astimezone(zone).replace(tzinfo=None) >= wall:
            after = middle
        else:
            before = middle
    return after.replace(tzinfo=None, microsecond=0)


def next_opening(windows: list[dict], now: datetime) -> tuple[dict, datetime] | None:
    """The first window start after `now` (naive UTC) and its window, within the next 8 days."""
    found = []
    for window in windows:
        today = now.replace(tzinfo=UTC).astimezone(ZoneInfo(window["tz"])).date()
        for offset in range(8):
            day = today + timedelta(days=offset)
            if DAYS[day.weekday()] not in window["days"]:
                continue
            start, end = _interval(window, day)
            if now < start < end:  # a window wholly in a skipped hour does not open that day
                found.append((start, window))
                break
    if not found:
        return None
    moment, window = min(found, key=lambda pair: pair[0])
    return window, moment


def effective(environment_windows: list[dict] | None, environment_freezes: list[dict] | None,
              project_windows: list[dict] | None, project_freezes: list[dict] | None) -> tuple[list, list]:
    """What holds for an environment: its own windows, or its project's when it has none of its
    own (NULL); the project's freezes and its own, both (a freeze only ever stops more)."""
    windows = environment_windows if environment_windows is not None else project_windows
    return list(windows or []), [*(project_freezes or []), *(environment_freezes or [])]


def judge_environment(environment, now: datetime) -> Verdict:
    """judge() for an Environment row and its project, as they are loaded."""
    return judge(*effective(environment.change_windows, environment.freezes, environment.project.change_windows,
                            environment.project.freezes), now)


# -- the settings form: one window or freeze a line ------------------------------------------------

ALWAYS = "always"  # an environment's windows box: always open, whatever its project's windows


def window_lines(windows: list[dict] | None) -> str:
    """`mon,tue,wed 09:00-16:00 Europe/Berlin` a line; None (the project's) is empty."""
    if windows is None:
        return ""
    if not windows:
        return ALWAYS
    return "\n".join(f"{','.join(w['days'])} {w['start']}-{w['end']} {w['tz']}" for w in windows)


def windows_from_lines(raw: str, label: str, *, nullable: bool) -> list[dict] | None:
    """The reverse of window_lines; days may be a range (mon-fri). Checked by check_windows after."""
    lines = [line.split() for line in raw.splitlines() if line.strip()]
    if not lines:
        return None if nullable else []
    if lines == [[ALWAYS]]:
        return []
    found = []
    for number, words in enumerate(lines, 1):
        hours = words[1].split("-") if len(words) == 3 else []
        if len(hours) != 2:
            raise WindowError(f"{label}, line {number}: write a window as days, hours and a time zone, e.g. "
                              f"mon-fri 09:00-16:00 Europe/Berlin{' (or ' + ALWAYS + ')' if nullable else ''}.")
        found.append({"days": _days(words[0], f"{label}, line {number}"), "start": hours[0], "end": hours[1],
                      "tz": words[2]})
    return found


def _days(text: str, where: str) -> list[str]:
    days: list[str] = []
    for part in text.lower().split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise WindowError(f"{where}: days are {', '.join(DAYS)}, separated by commas or as a range like mon-fri.")
        start, end = DAYS.index(first), DAYS.index(last or first)
        days.extend(DAYS[start:end + 1] if start <= end else [*DAYS[start:], *DAYS[:end + 1]])
    return days


def freeze_lines(freezes: list[dict]) -> str:
    """`2026-12-20T00:00:00Z 2027-01-04T00:00:00Z year-end freeze` a line."""
    return "\n".join(f"{f['from']} {f['to']} {f['reason']}" for f in freezes)


def freezes_from_lines(raw: str, label: str) -> list[dict]:
    """The reverse of freeze_lines. Checked by check_freezes after."""
    found = []
    for number, line in enumerate((line for line in raw.splitlines() if line.strip()), 1):
        words = line.split(None, 2)
        if len(words) != 3:
            raise WindowError(f"{label}, line {number}: write a freeze as its start, its end (UTC) and why, e.g. "
                              "2026-12-20T00:00:00Z 2027-01-04T00:00:00Z year-end freeze.")
        found.append({"from": words[0], "to": words[1], "reason": words[2]})
    return found


# -- which changes let releases start more often (environments.weakened_settings) -------------------

def windows_widened(old: list[dict] | None, new: list[dict] | None) -> bool:
    """Windows that may let a release start at a moment the old ones did not: a new window, or
    none at all (always open). For an environment, None means its project's windows, which may
    be anything: a move to or from them counts as wider unless it comes from always open."""
    if old == new:
        return False
    if old == []:  # always open already
        return False
    if new is None or new == [] or old is None:
        return True
    return any(window not in old for window in new)


def freezes_lifted(old: list[dict] | None, new: list[dict] | None) -> bool:
    """A freeze removed or changed (shortened, moved) lets releases start when they could not."""
    return any(freeze not in (new or []) for freeze in old or [])
