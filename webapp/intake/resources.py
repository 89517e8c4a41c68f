"""Resource changes and the checks every field a client sends shares: slugs, text a database
can store, JSON values, and messages that show what was sent. A client's mistake raises
InvalidInput (trigger.py reads a whole trigger body; terraform.py maps plans)."""

from __future__ import annotations

import copy
import math
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

CHANGE_TYPES = (
    "CREATE",
    "DELETE",
    "UPDATE_IN_PLACE",
    "REPLACE",
    "RECREATE",
    "NO_OPERATION",
)
DESTRUCTIVE_CHANGE_TYPES = frozenset({"DELETE", "REPLACE", "RECREATE"})
RESOURCE_KEYS = ("resourceType", "resourceName", "resourcePath", "changeType")
# Filled in from a Terraform plan only (attributes.py): masked and bounded there, so a list a
# client writes cannot carry them.
PLAN_ONLY_KEYS = ("attributes", "attributes_truncated")

SLUG_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")

MAX_RESOURCES = 10_000
MAX_RESOURCE_TEXT_LENGTH = 1_000
MAX_EXTRA_DEPTH = 32

_MESSAGE_VALUE_LENGTH = 60
_JSON_TYPE_NAMES = (
    (bool, "a boolean"),
    ((int, float), "a number"),
    (str, "a string"),
    (list, "a list"),
    (Mapping, "an object"),
)


class InvalidInput(ValueError):
    """A request a client can fix: `message` says what is wrong and what to do.

    `status` is 400 for a malformed shape (wrong JSON type, missing key) and 422 for a
    well-formed value that is not acceptable (unknown change type, too long, ...).
    """

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# --- slugs ----------------------------------------------------------------------------


def is_slug(name: object) -> bool:
    """Whether `name` is a project or environment name: `[a-z0-9][a-z0-9_-]{0,62}`."""
    return isinstance(name, str) and SLUG_PATTERN.fullmatch(name) is not None


def check_slug(name: object, what: str = "project name") -> str:
    """Return `name` if it is a slug, else raise InvalidInput (400 non-string, 422)."""
    if not isinstance(name, str):
        raise InvalidInput(f"The {what} must be a string, not {json_type(name)}.", 400)
    if not is_slug(name):
        raise InvalidInput(
            f"{show_value(name)} is not a valid {what}: use 1–63 lowercase letters, digits, "
            '"-" or "_", starting with a letter or digit.'
        )
    return name


# --- resource changes -----------------------------------------------------------------


def parse_resources(value: object, label: str = "resources") -> list[dict]:
    """Validate a list of resource changes and return normalised copies.

    Each entry is an object with the four string keys resourceType, resourceName,
    resourcePath and changeType (non-empty, at most 1,000 characters; changeType one of
    CHANGE_TYPES, exact case). Other keys are kept as given when they hold plain JSON, except
    PLAN_ONLY_KEYS, which only a Terraform plan fills in.
    An empty list is allowed: a release with no changes still runs its hook and command.
    At most MAX_RESOURCES entries.
    """
    if not isinstance(value, list):
        raise InvalidInput(
            f"{label} must be a list of resource changes, not {json_type(value)}.", 400
        )
    check_count(len(value), label)
    return [
        _parse_resource(entry, f"{label}[{index}]") for index, entry in enumerate(value)
    ]


def changes_nothing(resources: list[dict]) -> bool:
    """True when every resource is left as it is (none at all, or only NO_OPERATION, as in a
    Terraform plan of no changes): applying such a release runs its release command for nothing."""
    return all(resource["changeType"] == "NO_OPERATION" for resource in resources)


def _parse_resource(entry: object, label: str) -> dict:
    if not isinstance(entry, dict):
        raise InvalidInput(
            f"{label} must be an object with {key_list(RESOURCE_KEYS)}, "
            f"not {json_type(entry)}.",
            400,
        )
    for key in RESOURCE_KEYS:
        if key not in entry:
            raise InvalidInput(f'{label} is missing "{key}".', 400)
    resource = {
        key: check_text(entry[key], f"{label}.{key}", MAX_RESOURCE_TEXT_LENGTH)
        for key in RESOURCE_KEYS
    }
    _check_change_type(resource["changeType"], f"{label}.changeType")
    for key, extra in entry.items():
        if key in RESOURCE_KEYS:
            continue
        if key in PLAN_ONLY_KEYS:
            raise InvalidInput(
                f'{label}.{key} is filled in from a Terraform plan: send the plan as '
                '"terraform_plan" (or upload it), or name the key differently.'
            )
        if not isinstance(key, str):
            raise InvalidInput(
                f"{label} has a key that is {json_type(key)}, not a string.", 400
            )
        _check_json_value(extra, f"{label}.{_field(key)}")
        resource[key] = copy.deepcopy(extra)
    return resource


def _check_change_type(change_type: str, label: str) -> None:
    if change_type not in CHANGE_TYPES:
        raise InvalidInput(
            f"{label} {show_value(change_type)} is not a change type: use one of "
            f"{', '.join(CHANGE_TYPES[:-1])} or {CHANGE_TYPES[-1]}."
        )


def check_count(count: int, label: str) -> None:
    if count > MAX_RESOURCES:
        raise InvalidInput(
            f"{label} has {count:,} entries; a release takes at most "
            f"{MAX_RESOURCES:,}: split it into several releases."
        )


# --- small checks shared by the above -------------------------------------------------


def check_text(value: object, label: str, limit: int) -> str:
    """A non-empty string of at most `limit` characters that a database can store."""
    if not isinstance(value, str):
        raise InvalidInput(f"{label} must be a string, not {json_type(value)}.", 400)
    if not value:
        raise InvalidInput(f"{label} is empty: give it a value.")
    if len(value) > limit:
        raise InvalidInput(
            f"{label} is {len(value):,} characters long; the limit is {limit:,}."
        )
    check_storable(value, label)
    return value


def unstorable(text: str) -> str | None:
    """What in `text` a database cannot store, or None.

    PostgreSQL text and jsonb refuse NUL, and UTF-8 cannot encode a lone surrogate (which
    json.loads makes out of "\ud800"): either would fail later as a server error.
    """
    if "\x00" in text:
        return "a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "an unpaired surrogate"
    return None


def check_storable(text: str, label: str) -> str:
    found = unstorable(text)
    if found is not None:
        raise InvalidInput(f"{label} contains {found}, which cannot be stored: remove it.")
    return text


def _check_json_value(value: object, label: str) -> None:
    """Plain JSON only (no NaN, string keys), nested at most MAX_EXTRA_DEPTH deep."""
    for item, depth in _walk(value):
        if depth > MAX_EXTRA_DEPTH:
            raise InvalidInput(
                f"{label} is nested more than {MAX_EXTRA_DEPTH} levels deep."
            )
        if isinstance(item, str):
            check_storable(item, label)
        elif isinstance(item, float) and not math.isfinite(item):
            raise InvalidInput(
                f"{label} holds {item}, which JSON cannot carry: send a number."
            )
        elif isinstance(item, Mapping) and not all(isinstance(k, str) for k in item):
            raise InvalidInput(f"{label} has an object key that is not a string.", 400)
        elif not isinstance(item, (type(None), bool, int, float, list, Mapping)):
            raise InvalidInput(
                f"{label} holds {json_type(item)}, which is not JSON.", 400
            )


def _walk(value: object) -> Iterator[tuple[object, int]]:
    """Every value nested in `value` with its depth, without recursion."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        yield item, depth
        if depth > MAX_EXTRA_DEPTH:
            continue
        if isinstance(item, Mapping):
            stack.extend((child, depth + 1) for child in item.values())
            stack.extend((key, depth + 1) for key in item if isinstance(key, str))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)


def json_type(value: object) -> str:
    """How a value reads in JSON terms, for messages: "null", "a number", ..."""
    if value is None:
        return "null"
    # bool before int: True is an int in Python but not a number in JSON.
    for kind, name in _JSON_TYPE_NAMES:
        if isinstance(value, kind):
            return name
    return f"a {type(value).__name__}"


def show_value(value: Any) -> str:
    """A short quoted form of a client's string (or list of strings) for a message."""
    if isinstance(value, list):
        return "[" + ", ".join(show_value(item) for item in value[:10]) + "]"
    if not isinstance(value, str):
        return json_type(value)
    if len(value) > _MESSAGE_VALUE_LENGTH:
        value = value[: _MESSAGE_VALUE_LENGTH - 1] + "…"
    escapes = {'"': '\\"', "\\": "\\\\"}
    shown = "".join(
        escapes.get(char, char) if char.isprintable() else f"\\u{ord(char):04x}"
        for char in value
    )
    return f'"{shown}"'


def _field(key: str) -> str:
    return key if len(key) <= _MESSAGE_VALUE_LENGTH else show_value(key)


def key_list(keys: tuple[str, ...]) -> str:
    return ", ".join(keys[:-1]) + " and " + keys[-1]


# -- how people read a change list ---------------------------------------------------------------

# One order wherever changes are listed or counted (the release page, the inbox, the email, Slack):
# what cannot be undone first.
READING_ORDER = ("DELETE", "RECREATE", "REPLACE", "UPDATE_IN_PLACE", "CREATE", "NO_OPERATION")


def _in_reading_order(change_types) -> list[str]:
    return [t for t in READING_ORDER if t in change_types] + sorted(t for t in change_types if t not in READING_ORDER)


def resource_groups(resources: list[dict]) -> list[dict]:
    """Resources grouped by change type in READING_ORDER, the destructive groups marked."""
    by_type: dict[str, list[dict]] = {}
    for resource in resources:
        by_type.setdefault(resource.get("changeType", ""), []).append(resource)
    return [{"change_type": t, "resources": by_type[t], "destructive": t in DESTRUCTIVE_CHANGE_TYPES}
            for t in _in_reading_order(by_type)]


def change_counts(resources: list[dict]) -> list[tuple[str, int, bool]]:
    """(change type, count, destructive) in READING_ORDER."""
    counts = Counter(resource.get("changeType", "") for resource in resources)
    return [(t, counts[t], t in DESTRUCTIVE_CHANGE_TYPES) for t in _in_reading_order(counts)]
