"""What a Terraform plan changes inside one resource: its top-level attributes before and after,
as short text, with what Terraform marks sensitive masked before anything is kept."""

from __future__ import annotations

import json
from collections.abc import Iterator

from .resources import unstorable

MAX_VALUE_LENGTH = 200
MAX_ATTRIBUTES_PER_RESOURCE = 50
MAX_ATTRIBUTES_PER_RELEASE = 5_000
SENSITIVE = "(sensitive value)"
UNKNOWN = "(known after apply)"


class Malformed(ValueError):
    """The change is not shaped as Terraform writes it: it gets no attributes."""


def attribute_changes(change: object, limit: int = MAX_ATTRIBUTES_PER_RESOURCE) -> tuple[list[dict], bool]:
    """The top-level attributes that differ in one `resource_changes[i].change`, sorted by name.

    Each is {"name", "before", "after"}: the value as JSON text (nested maps and lists too) cut
    to MAX_VALUE_LENGTH characters; "(sensitive value)" on both sides where before_sensitive or
    after_sensitive marks any part of it (or the whole object); "(known after apply)" where
    after_unknown marks it; "null" for a side the attribute is absent from. At most `limit`
    attributes. Returns (attributes, truncated): truncated when a value, a name or the list was
    cut. A change not shaped as Terraform writes it yields ([], False); it never refuses the plan.
    """
    try:
        return _attribute_changes(change, max(limit, 0))
    except (Malformed, RecursionError, TypeError, ValueError):
        return [], False


def _attribute_changes(change: object, limit: int) -> tuple[list[dict], bool]:
    if not isinstance(change, dict):
        raise Malformed
    before, after = _object(change.get("before")), _object(change.get("after"))
    before_sensitive, after_sensitive = _marks(change.get("before_sensitive")), _marks(change.get("after_sensitive"))
    unknown = _marks(change.get("after_unknown"))
    names = set(before) | set(after) | (set(unknown) if isinstance(unknown, dict) else set())
    if not all(isinstance(name, str) for name in names):
        raise Malformed
    found, truncated = [], False
    for name in sorted(names):
        old, new = _text(before, name), _text(after, name)
        old_secret, new_secret = _marks_name(before_sensitive, name), _marks_name(after_sensitive, name)
        new_unknown = _marks_name(unknown, name)
        # Secrets are compared, never kept: a changed password reads as (sensitive value) twice.
        if old == new and old_secret == new_secret and not new_unknown:
            continue
        if len(found) == limit:
            return found, True
        # Marked on either side is secret on both, as Terraform shows it: a value whose mark is
        # dropped by this plan is still the secret it was.
        secret = old_secret or new_secret
        old = SENSITIVE if secret and name in before else old
        new = UNKNOWN if new_unknown else SENSITIVE if secret and name in after else new
        (shown_name, name_cut), (old, old_cut), (new, new_cut) = _shown(name), _shown(old), _shown(new)
        found.append({"name": shown_name, "before": old, "after": new})
        truncated = truncated or name_cut or old_cut or new_cut
    return found, truncated


def _object(value: object) -> dict:
    """before/after: the resource's attributes, or null when it does not exist on that side."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Malformed
    return value


def _marks(value: object) -> bool | dict:
    """before_sensitive, after_sensitive, after_unknown: absent or false (nothing marked), true (all
    of it) or an object mirroring the attributes."""
    if value is None or value is False:
        return False
    if value is True or isinstance(value, dict):
        return value
    raise Malformed


def _marks_name(marks: bool | dict, name: str) -> bool:
    return marks is True or (isinstance(marks, dict) and _marked(marks.get(name)))


def _text(values: dict, name: str) -> str:
    """An attribute's value as JSON text in full; "null" where it is absent, as Terraform shows it."""
    return json.dumps(values.get(name), ensure_ascii=False, sort_keys=True)


def _marked(mark: object) -> bool:
    """Whether a marker, at any depth, marks something. Fail closed: anything but false, null
    and containers of those counts as marked."""
    return any(leaf is not False and leaf is not None for leaf in _leaves(mark))


def _leaves(value: object) -> Iterator[object]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        else:
            yield item


def _shown(text: str) -> tuple[str, bool]:
    """`text` cut to MAX_VALUE_LENGTH with "…", storable; and whether it was cut."""
    if unstorable(text):
        text = json.dumps(text)[1:-1]  # escapes NUL and lone surrogates as \\u…
    if len(text) <= MAX_VALUE_LENGTH:
        return text, False
    return text[: MAX_VALUE_LENGTH - 1] + "…", True
