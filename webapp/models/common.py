"""What every table module shares: the release states, the default approval rule, the clock."""
from __future__ import annotations

import secrets
from datetime import UTC, datetime

SLOT_STATES = ("READY", "PENDING_APPROVAL", "SCHEDULED", "IN_PROGRESS")
TERMINAL_STATES = ("APPROVED", "REJECTED", "CANCELLED", "SUCCEEDED", "FAILED", "TIMED_OUT")
STATES = ("QUEUED", *SLOT_STATES, *TERMINAL_STATES)
DEFAULT_RULES = ({"name": "default", "group": None, "approvals": 1},)
DEFAULT_RULES_JSON = '[{"name": "default", "group": null, "approvals": 1}]'


def utcnow() -> datetime:
    """Naive UTC: what every timestamp column stores."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_login_id() -> str:
    return secrets.token_urlsafe(24)

