"""Validation of what a release trigger carries: resource changes (Terraform plans are
mapped in terraform.py), ref and description. A client's mistake raises InvalidInput."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
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

SLUG_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")

MAX_RESOURCES = 10_000
MAX_RESOURCE_TEXT_LENGTH = 1_000
MAX_EXTRA_DEPTH = 32
MAX_REF_LENGTH = 255
MAX_DESCRIPTION_LENGTH = 2_000

TRIGGER_KEYS = ("resources", "terraform_plan", "ref", "description")

_MESSAGE_VALUE_LENGTH = 60
_MESSAGE_KEY_COUNT = 5
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


@dataclass(frozen=True)
class TriggerRequest:
    """A validated trigger body: resource changes, optional ref, description."""

    resources: list[dict]
    ref: str | None
    description: str


# --- slugs ----------------------------------------------------------------------------


def is_slug(name: object) -> bool:
    """Whether `name` is a project or environment name: `[a-z0-9][a-z0-9_-]{0,62}`."""
    return isinstance(name, str) and SLUG_PATTERN.fullmatch(name) is not None


def check_slug(name: object, what: str = "project name") -> str:
    """Return `name` if it is a slug, else raise InvalidInput (400 non-string, 422)."""
    if not isinstance(name, str):
        raise InvalidInput(f"The {what} must be a string, not {_json_type(name)}.", 400)
    if not is_slug(name):
        raise InvalidInput(
            f"{_show(name)} is not a valid {what}: use 1–63 lowercase letters, digits, "
            '"-" or "_", starting with a letter or digit.'
        )
    return name


# --- resource changes -----------------------------------------------------------------


def parse_resources(value: object, label: str = "resources") -> list[dict]:
    """Validate a list of resource changes and return normalised copies.

    Each entry is an object with the four string keys resourceType, resourceName,
    resourcePath and changeType (non-empty, at most 1,000 characters; changeType one of
    CHANGE_TYPES, exact case). Other keys are kept as given when they hold plain JSON.
    An empty list is allowed: a release with no changes still runs its hook and command.
    At most MAX_RESOURCES entries.
    """
    if not isinstance(value, list):
        raise InvalidInput(
            f"{label} must be a list of resource changes, not {_json_type(value)}.", 400
        )
    _check_count(len(value), label)
    return [
        _parse_resource(entry, f"{label}[{index}]") for index, entry in enumerate(value)
    ]


def _parse_resource(entry: object, label: str) -> dict:
    if not isinstance(entry, dict):
        raise InvalidInput(
            f"{label} must be an object with {_key_list(RESOURCE_KEYS)}, "
            f"not {_json_type(entry)}.",
            400,
        )
    for key in RESOURCE_KEYS:
        if key not in entry:
            raise InvalidInput(f'{label} is missing "{key}".', 400)
    resource = {
        key: _check_text(entry[key], f"{label}.{key}", MAX_RESOURCE_TEXT_LENGTH)
        for key in RESOURCE_KEYS
    }
    _check_change_type(resource["changeType"], f"{label}.changeType")
    for key, extra in entry.items():
        if key in RESOURCE_KEYS:
            continue
        if not isinstance(key, str):
            raise InvalidInput(
                f"{label} has a key that is {_json_type(key)}, not a string.", 400
            )
        _check_json_value(extra, f"{label}.{_field(key)}")
        resource[key] = copy.deepcopy(extra)
    return resource


def _check_change_type(change_type: str, label: str) -> None:
    if change_type not in CHANGE_TYPES:
        raise InvalidInput(
            f"{label} {_show(change_type)} is not a change type: use one of "
            f"{', '.join(CHANGE_TYPES[:-1])} or {CHANGE_TYPES[-1]}."
        )


def _check_count(count: int, label: str) -> None:
    if count > MAX_RESOURCES:
        raise InvalidInput(
            f"{label} has {count:,} entries; a release takes at most "
            f"{MAX_RESOURCES:,}: split it into several releases."
        )


# --- the trigger body -----------------------------------------------------------------


def parse_trigger_body(body: object) -> TriggerRequest:
    """Validate a trigger request body and return what it asks for.

    The body is an object with exactly one of "resources" (a list of resource changes)
    and "terraform_plan" (`terraform show -json` output), an optional "ref" (a branch,
    tag or commit) and an optional "description" (at most 2,000 characters). A key
    whose value is null counts as not sent. Unknown keys are refused, so a misspelt
    field never goes unnoticed.
    """
    if not isinstance(body, dict):
        raise InvalidInput("The request body must be a JSON object.", 400)
    _check_known_keys(body)
    sent = {key: value for key, value in body.items() if value is not None}
    return TriggerRequest(
        resources=_trigger_resources(sent),
        ref=_check_ref(sent["ref"]) if "ref" in sent else None,
        description=_check_description(sent.get("description", "")),
    )


def _check_known_keys(body: dict) -> None:
    unknown = [key if isinstance(key, str) else str(key) for key in body]
    unknown = [key for key in unknown if key not in TRIGGER_KEYS]
    if unknown:
        shown, hidden = unknown[:_MESSAGE_KEY_COUNT], len(unknown) - _MESSAGE_KEY_COUNT
        names = ", ".join(_show(key) for key in shown)
        more = f" and {hidden:,} more" if hidden > 0 else ""
        raise InvalidInput(
            f"Unknown field{'s' if len(unknown) > 1 else ''} {names}{more} in the "
            f"request body: send only {_key_list(TRIGGER_KEYS)}.",
            400,
        )


def _trigger_resources(sent: dict) -> list[dict]:
    if "resources" in sent and "terraform_plan" in sent:
        raise InvalidInput(
            'Send either "resources" or "terraform_plan", not both.', 400
        )
    if "resources" in sent:
        return parse_resources(sent["resources"])
    if "terraform_plan" in sent:
        # Imported here: terraform.py builds on this module's checks.
        from .terraform import resources_from_terraform_plan

        return resources_from_terraform_plan(sent["terraform_plan"])
    raise InvalidInput(
        'The request body needs "resources" (a list of resource changes) or '
        '"terraform_plan" (the output of `terraform show -json <planfile>`).',
        400,
    )


def _check_ref(ref: object) -> str:
    if not isinstance(ref, str):
        raise InvalidInput(f'"ref" must be a string, not {_json_type(ref)}.', 400)
    if not ref:
        raise InvalidInput(
            '"ref" is empty: name a branch, tag or commit, or leave it out.'
        )
    if len(ref) > MAX_REF_LENGTH:
        raise InvalidInput(
            f'"ref" is {len(ref):,} characters long; the limit is {MAX_REF_LENGTH}.'
        )
    if any(char.isspace() or not char.isprintable() for char in ref):
        raise InvalidInput(
            f'"ref" {_show(ref)} contains spaces or control characters: name a branch, '
            "tag or commit."
        )
    if ref.startswith("-"):
        # git would read it as an option.
        raise InvalidInput(f'"ref" {_show(ref)} must not start with "-".')
    check_storable(ref, '"ref"')
    return ref


def _check_description(description: object) -> str:
    if not isinstance(description, str):
        raise InvalidInput(
            f'"description" must be a string, not {_json_type(description)}.', 400
        )
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidInput(
            f'"description" is {len(description):,} characters long; '
            f"the limit is {MAX_DESCRIPTION_LENGTH:,}."
        )
    check_storable(description, '"description"')
    return description


# --- small checks shared by the above -------------------------------------------------


def _check_text(value: object, label: str, limit: int) -> str:
    """A non-empty string of at most `limit` characters that a database can store."""
    if not isinstance(value, str):
        raise InvalidInput(f"{label} must be a string, not {_json_type(value)}.", 400)
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
                f"{label} holds {_json_type(item)}, which is not JSON.", 400
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


def _json_type(value: object) -> str:
    """How a value reads in JSON terms, for messages: "null", "a number", ..."""
    if value is None:
        return "null"
    # bool before int: True is an int in Python but not a number in JSON.
    for kind, name in _JSON_TYPE_NAMES:
        if isinstance(value, kind):
            return name
    return f"a {type(value).__name__}"


def _show(value: Any) -> str:
    """A short quoted form of a client's string (or list of strings) for a message."""
    if isinstance(value, list):
        return "[" + ", ".join(_show(item) for item in value[:10]) + "]"
    if not isinstance(value, str):
        return _json_type(value)
    if len(value) > _MESSAGE_VALUE_LENGTH:
        value = value[: _MESSAGE_VALUE_LENGTH - 1] + "…"
    escapes = {'"': '\\"', "\\": "\\\\"}
    shown = "".join(
        escapes.get(char, char) if char.isprintable() else f"\\u{ord(char):04x}"
        for char in value
    )
    return f'"{shown}"'


def _field(key: str) -> str:
    return key if len(key) <= _MESSAGE_VALUE_LENGTH else _show(key)


def _key_list(keys: tuple[str, ...]) -> str:
    return ", ".join(keys[:-1]) + " and " + keys[-1]
