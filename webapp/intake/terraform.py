"""Turn `terraform show -json <planfile>` output into Releasegate's resource changes."""

from __future__ import annotations

from .attributes import MAX_ATTRIBUTES_PER_RELEASE, MAX_ATTRIBUTES_PER_RESOURCE, attribute_changes
from .resources import (
    MAX_RESOURCE_TEXT_LENGTH,
    InvalidInput,
    check_count,
    check_text,
    json_type,
    show_value,
)

# Terraform's change.actions to our change types; ["read"] (data sources) is skipped.
TERRAFORM_ACTIONS = {
    ("create",): "CREATE",
    ("delete",): "DELETE",
    ("update",): "UPDATE_IN_PLACE",
    ("delete", "create"): "RECREATE",
    ("create", "delete"): "REPLACE",
    ("no-op",): "NO_OPERATION",
    ("forget",): "NO_OPERATION",
}
TERRAFORM_SKIPPED_ACTIONS = (("read",),)
# The plan's own fields that say what it is and whether it can be trusted, with the JSON type
# `terraform show -json` writes them as. Another type is not guessed at: "errored": "yes"
# once read as a plan without errors, and so as one that changes nothing.
PLAN_FIELD_TYPES = {
    "format_version": (str, "a string"),
    "errored": (bool, "true or false"),
    "applyable": (bool, "true or false"),
    "complete": (bool, "true or false"),
    "planned_values": (dict, "an object"),
}
_BMP_LAST = 0xFFFF


def resources_from_terraform_plan(plan: object, label: str = "terraform_plan") -> list[dict]:
    """Turn `terraform show -json <planfile>` output into resource changes.

    Each entry of resource_changes becomes {resourceType: type, resourceName: name plus
    its index in address style (`[0]`, `["key"]`), resourcePath: address, changeType},
    plus the raw `actions` and, when present, `action_reason`, and the attributes that
    differ (`attributes`, `attributes_truncated`: see attributes.py). Data source reads are
    left out. A plan without resource_changes is Terraform saying nothing changes: an
    empty list, provided the object carries "format_version" like every `terraform show
    -json` output (a state, which has "values" instead of a plan's changes, is refused).
    A plan marked "errored" is refused: its changes are incomplete. The plan's own fields
    (PLAN_FIELD_TYPES) must have the types Terraform writes, or the plan is refused (422).
    `label` names the plan in messages: the API field, or "The uploaded plan" in a form.
    """
    if not isinstance(plan, dict):
        raise InvalidInput(
            f"{label} must be an object: the output of "
            f"`terraform show -json <planfile>`, not {json_type(plan)}.",
            400,
        )
    _check_plan_fields(plan)
    if plan.get("errored") is True:
        raise InvalidInput(
            "The Terraform plan is marked as errored, so its changes are incomplete: "
            "fix the errors and plan again."
        )
    changes = _plan_resource_changes(plan, label)
    check_count(len(changes), "resource_changes")
    resources = []
    room = MAX_ATTRIBUTES_PER_RELEASE
    for index, change in enumerate(changes):
        resource = _resource_from_change(change, f"resource_changes[{index}]")
        if resource is not None:
            room -= _add_attributes(resource, change["change"], room)
            resources.append(resource)
    return resources


def _add_attributes(resource: dict, change: dict, room: int) -> int:
    """Give a resource that changes its attribute diff (attributes.py), at most `room` of them
    (what the release has left); returns how many it took. A no-op changes nothing to show."""
    if resource["changeType"] == "NO_OPERATION":
        return 0
    attributes, truncated = attribute_changes(change, min(MAX_ATTRIBUTES_PER_RESOURCE, room))
    if attributes or truncated:
        resource["attributes"] = attributes
    if truncated:
        resource["attributes_truncated"] = True
    return len(attributes)


def _check_plan_fields(plan: dict) -> None:
    for field, (kind, words) in PLAN_FIELD_TYPES.items():
        if field in plan and not isinstance(plan[field], kind):
            raise InvalidInput(
                f'The Terraform plan\'s "{field}" must be {words}, not '
                f"{json_type(plan[field])}: send the output of "
                "`terraform show -json <planfile>` as Terraform wrote it.",
                422,
            )


def _plan_resource_changes(plan: dict, label: str) -> list:
    if "resource_changes" in plan:
        changes = plan["resource_changes"]
        if not isinstance(changes, list):
            raise InvalidInput(
                'The Terraform plan\'s "resource_changes" must be a list, '
                f"not {json_type(changes)}.",
                400,
            )
        return changes
    if "format_version" not in plan:
        raise InvalidInput(
            f'{label} has neither "resource_changes" nor "format_version": '
            "send the output of `terraform show -json <planfile>`.",
            400,
        )
    if "values" in plan and "planned_values" not in plan:
        raise InvalidInput(
            f"{label} looks like Terraform state, not a plan: run "
            "`terraform show -json` on the plan file written by `terraform plan -out`.",
            400,
        )
    return []


def _resource_from_change(change: object, label: str) -> dict | None:
    if not isinstance(change, dict):
        raise InvalidInput(f"{label} must be an object, not {json_type(change)}.", 400)
    for key in ("type", "name", "address", "change"):
        if key not in change:
            raise InvalidInput(f'{label} is missing "{key}".', 400)
    resource_type = check_text(
        change["type"], f"{label}.type", MAX_RESOURCE_TEXT_LENGTH
    )
    name = check_text(change["name"], f"{label}.name", MAX_RESOURCE_TEXT_LENGTH)
    address = check_text(
        change["address"], f"{label}.address", MAX_RESOURCE_TEXT_LENGTH
    )
    actions = _plan_actions(change["change"], f"{label}.change")
    if tuple(actions) in TERRAFORM_SKIPPED_ACTIONS:
        return None
    resource = {
        "resourceType": resource_type,
        "resourceName": check_text(
            name + _index_suffix(change.get("index"), f"{label}.index"),
            f"{label}.name",
            MAX_RESOURCE_TEXT_LENGTH,
        ),
        "resourcePath": address,
        "changeType": _change_type_for(actions, address),
        "actions": actions,
    }
    if change.get("action_reason") is not None:
        resource["action_reason"] = check_text(
            change["action_reason"], f"{label}.action_reason", MAX_RESOURCE_TEXT_LENGTH
        )
    return resource


def _plan_actions(change: object, label: str) -> list[str]:
    if not isinstance(change, dict):
        raise InvalidInput(f"{label} must be an object, not {json_type(change)}.", 400)
    if "actions" not in change:
        raise InvalidInput(f'{label} is missing "actions".', 400)
    actions = change["actions"]
    if not isinstance(actions, list) or not all(isinstance(a, str) for a in actions):
        raise InvalidInput(
            f'{label}.actions must be a list of strings such as ["create"].', 400
        )
    return list(actions)


def _change_type_for(actions: list[str], address: str) -> str:
    change_type = TERRAFORM_ACTIONS.get(tuple(actions))
    if change_type is None:
        known = [*TERRAFORM_ACTIONS, *TERRAFORM_SKIPPED_ACTIONS]
        raise InvalidInput(
            f"The Terraform plan changes {show_value(address)} with actions "
            f"{show_value(actions)}, which Releasegate cannot map to a change type: "
            "expected one of "
            f"{', '.join(show_value(list(a)) for a in known)}."
        )
    return change_type


def _index_suffix(index: object, label: str) -> str:
    """Terraform's address notation for an instance key: `[0]` or `["key"]`."""
    if index is None:
        return ""
    if isinstance(index, int) and not isinstance(index, bool):
        return f"[{index}]"
    if isinstance(index, str):
        return f"[{_hcl_quoted(index)}]"
    raise InvalidInput(
        f"{label} must be a number or a string, not {json_type(index)}.", 400
    )


def _hcl_quoted(text: str) -> str:
    """Quote like Terraform's toHCLQuotedString, so names match the plan's addresses."""
    escapes = {"\n": "\\n", "\r": "\\r", "\t": "\\t", '"': '\\"', "\\": "\\\\"}
    out = []
    for position, char in enumerate(text):
        if char in escapes:
            out.append(escapes[char])
        elif char in "$%" and text[position + 1 : position + 2] == "{":
            out.append(char * 2)
        elif char.isprintable():
            out.append(char)
        elif ord(char) <= _BMP_LAST:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'
