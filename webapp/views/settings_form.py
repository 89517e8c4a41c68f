"""The environment settings form: what each field is called, the form's strings read as the
values ENVIRONMENT_FIELDS checks (switches, numbers, the host paths, rules, windows and freezes
textareas), and a sentence for each setting a save would weaken."""
from __future__ import annotations

import math
from typing import Any

from werkzeug.datastructures import MultiDict

from .. import approval_rules, environments, windows
from ..environments import MODES, sandbox_path_entries
from ..intake.resources import InvalidInput
from ..intake.validate import ENVIRONMENT_FIELDS
from ..models import Environment

SETTING_LABELS = {
    "release_stream": "Release stream",
    "approval_workflow": "Approval workflow",
    "parallel_releases": "Parallel releases",
    "hook_ref": "Hook ref",
    "release_command": "Release command",
    "hook_timeout_seconds": "Hook timeout (seconds)",
    "release_timeout_seconds": "Release timeout (seconds)",
    "allow_self_approval": "Allow self-approval",
    "wait_for_external_finish": "Wait for an external finish",
    "approval_timeout_hours": "Approval timeout (hours)",
    "reminder_hours": "Reminder every (hours)",
    "sandbox_paths": "Host paths for the release command",
    "approval_rules": "Approval rules",
    "authors_may_not_approve": "Authors may not approve",
    "change_windows": "Change windows",
    "freezes": "Freezes",
    "allow_break_glass": "Allow emergency releases",
    "break_glass_review_hours": "Emergency release review due within (hours)",
}
MODE_SWITCHES = tuple(MODES["approval"])  # shown as one choice of mode
SWITCHES = ("allow_self_approval", "wait_for_external_finish", "authors_may_not_approve", "allow_break_glass")
ANYONE = "*"  # the approval rules textarea: a rule for anyone who may approve
WHOLE_NUMBERS = ("hook_timeout_seconds", "release_timeout_seconds")
OPTIONAL_TEXT = ("hook_ref", "release_command")
KEPT_WHEN_ABSENT = ("approval_rules", "change_windows", "freezes", "break_glass_review_hours")


def _typed_setting(name: str, raw: str, form: MultiDict) -> Any:
    """A form string as the type ENVIRONMENT_FIELDS checks: switches, numbers, None."""
    label = SETTING_LABELS[name]
    if name in SWITCHES:
        return name in form
    raw = raw.replace("\r\n", "\n").strip()
    if name == "sandbox_paths":
        return _sandbox_lines(raw, label)
    if name == "approval_rules":
        return _rule_lines(raw, label)
    try:
        if name == "change_windows":
            return windows.windows_from_lines(raw, label, nullable=True)
        if name == "freezes":
            return windows.freezes_from_lines(raw, label)
    except windows.WindowError as error:
        raise InvalidInput(str(error)) from None
    if name in WHOLE_NUMBERS:
        if not raw:
            raise InvalidInput(f"{label} is required.")
        try:
            return int(raw)
        except ValueError:
            raise InvalidInput(f"{label} must be a whole number.") from None
    if name in ("approval_timeout_hours", "reminder_hours", "break_glass_review_hours"):
        if not raw:
            return None
        try:
            hours = float(raw)
        except ValueError:
            hours = math.nan
        if not math.isfinite(hours):
            raise InvalidInput(f"{label} must be a number of hours, or empty for none.")
        return hours
    if name in OPTIONAL_TEXT and not raw:
        return None
    return raw


def _sandbox_lines(raw: str, label: str) -> list[dict[str, Any]]:
    """The host paths textarea: one `PATH rw` or `PATH ro` a line (`PATH` alone is read-only)."""
    entries = []
    for number, line in enumerate(raw.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        path, mode = line.rsplit(None, 1) if len(line.split()) > 1 else (line, "ro")
        if mode not in ("rw", "ro"):
            raise InvalidInput(f"{label}, line {number}: end the line with rw (writable) or ro (read-only), "
                               "e.g. /srv/shop rw.")
        entries.append({"path": path.rstrip(), "writable": mode == "rw"})
    return entries


def _rule_lines(raw: str, label: str) -> list[dict[str, Any]]:
    """The approval rules textarea: one `NAME GROUP APPROVALS` a line, GROUP `*` for anyone who
    may approve (e.g. `dba dba 1`); empty: the default rule."""
    rules = []
    for number, line in enumerate(raw.splitlines(), 1):
        words = line.split()
        if not words:
            continue
        if len(words) != 3 or not words[2].isascii() or not words[2].isdecimal():
            raise InvalidInput(f"{label}, line {number}: write a rule as its name, a group (or {ANYONE} for anyone "
                               "who may approve) and a number of approvals, e.g. dba dba 1.")
        name, group, approvals = words
        rules.append({"name": name, "group": None if group == ANYONE else group, "approvals": int(approvals)})
    return rules


def settings_from_form(form: MultiDict, environment: Environment) -> tuple[dict[str, Any], dict[str, str]]:
    """Clean values for every setting, and a sentence for each field that is not acceptable."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    mode = MODES.get(form.get("mode", ""))
    if mode is None:
        errors["mode"] = environments.MODE_CHOICE
    for name, check in ENVIRONMENT_FIELDS.items():
        label = SETTING_LABELS[name]
        if name in MODE_SWITCHES:
            if mode is not None:
                values[name] = check(mode[name], label)
            continue
        if name in KEPT_WHEN_ABSENT and name not in form:
            continue  # a form without the box (an older page) leaves the setting alone, never resets it
        try:
            value = _typed_setting(name, form.get(name, ""), form)
            if name == "sandbox_paths" and sandbox_path_entries(value, label) == environment.sandbox_paths:
                # Sent back unchanged with the rest of the form: a change to another setting is not
                # refused for host paths the operator has since disallowed (each run judges them again).
                values[name] = environment.sandbox_paths
                continue
            values[name] = check(value, label)
        except InvalidInput as error:
            errors[name] = error.message
    return values, errors


def submitted_settings(form: MultiDict) -> dict[str, Any]:
    """What the person typed, to show again beside the errors."""
    typed = {name: (name in form) if name in SWITCHES else form.get(name, "")
             for name in SETTING_LABELS if name not in MODE_SWITCHES}
    return {"mode": form.get("mode", ""), **typed}


def weakening_sentences(environment: Environment, changes: dict[str, Any], weakened: list[str]) -> list[str]:
    """What saving `changes` would make easier, one sentence for each weakened setting."""
    said = {
        "approval_workflow": "The approval workflow is turned off: no hook decides and nobody approves.",
        "release_stream": "The release stream the hook compares changes.",
        "allow_self_approval": "People may approve releases they triggered themselves.",
        "release_command": "The release command changes: it runs as code on the workers.",
        "hook_ref": "The hook is read from another ref.",
        "sandbox_paths": "The release command sees more host paths, or may write to more.",
        "authors_may_not_approve": "People who wrote or committed a change may approve it.",
        "allow_break_glass": "Emergency releases may skip the hook, the approvals and the windows.",
        "break_glass_review_hours": "Emergency releases get longer before their review is overdue.",
        "change_windows": "Releases may start at more times (the change windows are wider).",
        "freezes": "A freeze is lifted or shortened.",
    }
    sentences = []
    for name in weakened:
        if name == "approval_rules":
            lowered = approval_rules.weakenings(environment.approval_rules or [], changes[name])
            sentences.append(f"Fewer approvals are needed: {'; '.join(lowered)}.")
        else:
            sentences.append(said.get(name, f"{SETTING_LABELS.get(name, name)} changes."))
    return sentences


def form_fields(form: MultiDict) -> list[tuple[str, str]]:
    """The submitted fields, to send again unchanged from the "Save anyway" button."""
    return [(name, value) for name, value in form.items(multi=True)
            if name not in ("csrf_token", "confirm_weakening")]
