"""A release trigger's body: exactly one of a resource list and a Terraform plan, an optional
ref and description. A client's mistake raises InvalidInput."""
from __future__ import annotations

from dataclasses import dataclass

from .resources import InvalidInput, check_storable, json_type, key_list, parse_resources, show_value
from .terraform import resources_from_terraform_plan

TRIGGER_KEYS = ("resources", "terraform_plan", "ref", "description", "break_glass")
MAX_REF_LENGTH = 255
MAX_DESCRIPTION_LENGTH = 2_000
MESSAGE_KEY_COUNT = 5  # unknown keys named in a message


@dataclass(frozen=True)
class TriggerRequest:
    """A validated trigger body: resource changes, optional ref, description, and the reason of
    an emergency release (releases.trigger judges its length and who may)."""

    resources: list[dict]
    ref: str | None
    description: str
    break_glass: str | None = None


def parse_trigger_body(body: object) -> TriggerRequest:
    """Validate a trigger request body and return what it asks for.

    The body is an object with exactly one of "resources" (a list of resource changes)
    and "terraform_plan" (`terraform show -json` output), an optional "ref" (a branch,
    tag or commit), an optional "description" (at most 2,000 characters) and an optional
    "break_glass": {"reason": "…"} for an emergency release. A key
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
        break_glass=_check_break_glass(sent["break_glass"]) if "break_glass" in sent else None,
    )


def _check_known_keys(body: dict) -> None:
    unknown = [key if isinstance(key, str) else str(key) for key in body]
    unknown = [key for key in unknown if key not in TRIGGER_KEYS]
    if unknown:
        shown, hidden = unknown[:MESSAGE_KEY_COUNT], len(unknown) - MESSAGE_KEY_COUNT
        names = ", ".join(show_value(key) for key in shown)
        more = f" and {hidden:,} more" if hidden > 0 else ""
        raise InvalidInput(
            f"Unknown field{'s' if len(unknown) > 1 else ''} {names}{more} in the "
            f"request body: send only {key_list(TRIGGER_KEYS)}.",
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
        return resources_from_terraform_plan(sent["terraform_plan"])
    raise InvalidInput(
        'The request body needs "resources" (a list of resource changes) or '
        '"terraform_plan" (the output of `terraform show -json <planfile>`).',
        400,
    )


def _check_ref(ref: object) -> str:
    if not isinstance(ref, str):
        raise InvalidInput(f'"ref" must be a string, not {json_type(ref)}.', 400)
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
            f'"ref" {show_value(ref)} contains spaces or control characters: name a branch, '
            "tag or commit."
        )
    if ref.startswith("-"):
        # git would read it as an option.
        raise InvalidInput(f'"ref" {show_value(ref)} must not start with "-".')
    check_storable(ref, '"ref"')
    return ref


def _check_description(description: object) -> str:
    if not isinstance(description, str):
        raise InvalidInput(
            f'"description" must be a string, not {json_type(description)}.', 400
        )
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise InvalidInput(
            f'"description" is {len(description):,} characters long; '
            f"the limit is {MAX_DESCRIPTION_LENGTH:,}."
        )
    check_storable(description, '"description"')
    return description


def _check_break_glass(break_glass: object) -> str:
    reason = break_glass.get("reason") if isinstance(break_glass, dict) and set(break_glass) == {"reason"} else None
    if not isinstance(reason, str):
        raise InvalidInput('"break_glass" must be an object like {"reason": "what is broken and why it cannot wait"}.',
                           400)
    check_storable(reason, '"break_glass.reason"')
    return reason
