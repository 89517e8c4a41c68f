"""Checks for the settings a client sends: projects, environments and variables.

Each field is a small function (value, name) -> clean value that raises InvalidInput
with a sentence. Unknown keys are refused rather than ignored.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from flask import current_app

from .. import approval_rules as rules
from .. import windows
from ..environments import check_sandbox_paths, protected_locations
from .resources import InvalidInput, check_slug, check_storable
from .storable import one_line

Field = Callable[[Any, str], Any]
VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
RESERVED_VARIABLES = frozenset({"PATH", "LANG", "HOME", "RELEASE_ID", "PROJECT_NAME", "ENVIRONMENT_NAME",
                                "RELEASE_STREAM", "RELEASE_PAYLOAD"})


def boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false.", 400)
    return value


def text(limit: int, *, nullable: bool = False, required: bool = True, line: bool = False) -> Field:
    """`line`: one line of text, as a value that goes into mail headers, subjects and git refs must be."""
    def check(value: Any, name: str) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise InvalidInput(f"{name} must be a string{' or null' if nullable else ''}.", 400)
        value = value.strip()
        if required and not value and not nullable:
            raise InvalidInput(f"{name} must not be empty.", 422)
        if len(value) > limit:
            raise InvalidInput(f"{name} must be at most {limit} characters.", 422)
        check_storable(value, name)
        if line and one_line(value) != value:
            raise InvalidInput(f"{name} must be one line of text, without line breaks, tabs or other control "
                               "characters.", 422)
        return value or None if nullable else value
    return check


def integer(low: int, high: int) -> Field:
    def check(value: Any, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(f"{name} must be a whole number.", 400)
        if not low <= value <= high:
            raise InvalidInput(f"{name} must be between {low} and {high}.", 422)
        return value
    return check


def number(low: float, high: float, *, nullable: bool = False) -> Field:
    def check(value: Any, name: str) -> float | None:
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidInput(f"{name} must be a number{' or null' if nullable else ''}.", 400)
        if not low <= value <= high:
            raise InvalidInput(f"{name} must be between {low:g} and {high:g}.", 422)
        return float(value)
    return check


def sandbox_paths(value: Any, name: str) -> list[dict[str, Any]]:
    """Host paths for the release command, judged on this host against the operator's
    SANDBOX_ALLOWED_PATHS and the application's own locations (environments.py)."""
    config = current_app.config
    return check_sandbox_paths(value, config.get("SANDBOX_ALLOWED_PATHS", ()), protected_locations(config),
                               name=name)


def approval_rules(value: Any, name: str) -> list[dict[str, Any]]:
    """Who must approve and how many (approval_rules.py); [] is the default rule."""
    if not isinstance(value, list):
        raise InvalidInput(f'{name} must be a list of rules like [{rules.EXAMPLE}].', 400)
    try:
        return rules.check_rules(value, what=name)
    except rules.RuleError as error:
        raise InvalidInput(str(error), 422) from None


def web_url_template(value: Any, name: str) -> str | None:
    """Where a commit is shown on the web: an http(s) address with {sha} in it, or null."""
    value = text(1000, nullable=True)(value, name)
    if value is not None and (not value.startswith(("https://", "http://")) or "{sha}" not in value):
        raise InvalidInput(f"{name} must be an http(s) address with {{sha}} where the commit goes, e.g. "
                           "https://git.example.com/shop/commit/{sha}, or null.", 422)
    return value


def change_windows(*, nullable: bool) -> Field:
    """Weekly windows in a named time zone (windows.py); [] is always open, and for an
    environment null means its project's windows."""
    def check(value: Any, name: str) -> list[dict] | None:
        if value is None and nullable:
            return None
        try:
            return windows.check_windows(value, name)
        except windows.WindowError as error:
            raise InvalidInput(str(error) + (" Or null for the project's windows." if nullable else ""), 422) from None
    return check


def freezes(value: Any, name: str) -> list[dict]:
    """One-off intervals in UTC when nothing may start (windows.py)."""
    try:
        return windows.check_freezes(value, name)
    except windows.WindowError as error:
        raise InvalidInput(str(error), 422) from None


def slug(what: str) -> Field:
    return lambda value, _name: check_slug(value, what)


PROJECT_FIELDS: dict[str, Field] = {
    "name": slug("project name"),
    "repo": text(1000),
    "branch": text(255, line=True),
    "hook_ref": text(255, nullable=True, line=True),
    "web_url_template": web_url_template,
    "change_windows": change_windows(nullable=False),
    "freezes": freezes,
}
ENVIRONMENT_FIELDS: dict[str, Field] = {
    "release_stream": text(100, line=True),
    "approval_workflow": boolean,
    "parallel_releases": boolean,
    "release_command": text(10_000, nullable=True),
    "hook_ref": text(255, nullable=True, line=True),
    "hook_timeout_seconds": integer(1, 24 * 3600),
    "release_timeout_seconds": integer(1, 7 * 24 * 3600),
    "allow_self_approval": boolean,
    "wait_for_external_finish": boolean,
    "approval_timeout_hours": number(0.001, 24 * 365, nullable=True),
    "reminder_hours": number(0.01, 24 * 365, nullable=True),
    "sandbox_paths": sandbox_paths,
    "approval_rules": approval_rules,
    "authors_may_not_approve": boolean,
    "change_windows": change_windows(nullable=True),
    "freezes": freezes,
    "allow_break_glass": boolean,
    "break_glass_review_hours": number(0.1, 24 * 365),
}
GROUP_FIELDS: dict[str, Field] = {  # groups.py checks the name's form and the description's length
    "name": text(100),
    "description": text(10_000, required=False),
}
GRANT_FIELDS: dict[str, Field] = {
    "permission": text(100),
    "environment": text(200, nullable=True),  # PROJECT/ENV; null or absent: all environments
}
VARIABLE_FIELDS: dict[str, Field] = {
    "value": text(100_000, required=False),
    "secret": boolean,
    "for_hooks": boolean,
}


def fields(body: Any, spec: dict[str, Field], *, required: tuple[str, ...] = (),
           creating: str | None = None) -> dict[str, Any]:
    """Check a JSON object against `spec`; `required` keys must be present."""
    if not isinstance(body, dict):
        raise InvalidInput("The request body must be a JSON object.", 400)
    unknown = sorted(set(body) - set(spec))
    if unknown:
        raise InvalidInput(f"Unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))[:200]}; "
                           f"allowed: {', '.join(spec)}.", 400)
    missing = [key for key in required if key not in body]
    if missing:
        raise InvalidInput(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} required"
                           f"{' to create ' + creating if creating else ''}.", 400)
    return {key: spec[key](value, key) for key, value in body.items()}


def variable_name(name: str) -> str:
    if not VARIABLE_NAME.fullmatch(name):
        raise InvalidInput(f"{name[:80]!r} is not a valid variable name: use letters, digits and "
                           "underscores, not starting with a digit.", 422)
    if name in RESERVED_VARIABLES:
        raise InvalidInput(f"{name} is set by Releasegate itself; choose another name.", 422)
    return name
