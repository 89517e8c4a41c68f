"""Tables, one module per part of the app; rules about how rows change live in releases/,
not here. Import from here: `from webapp.models import Release, utcnow`."""
from .common import DEFAULT_RULES, DEFAULT_RULES_JSON, SLOT_STATES, STATES, TERMINAL_STATES, new_login_id, utcnow
from .core import (
    ApiToken,
    AuditEvent,
    Decision,
    Environment,
    Grant,
    Group,
    Project,
    Release,
    User,
    Variable,
    group_members,
)
from .notify import (
    EmailLink,
    OutgoingMail,
    SlackChannel,
    SlackLink,
    SlackLinkCode,
    SlackMessage,
    WebhookDelivery,
    WebhookEndpoint,
    webhook_endpoint_environments,
)

__all__ = [
    "DEFAULT_RULES", "DEFAULT_RULES_JSON", "SLOT_STATES", "STATES", "TERMINAL_STATES",
    "new_login_id", "utcnow", "OutgoingMail", "EmailLink", "WebhookEndpoint", "WebhookDelivery",
    "SlackChannel", "SlackMessage", "SlackLink", "SlackLinkCode", "webhook_endpoint_environments",
    "User", "Group", "Grant", "ApiToken", "group_members", "Project", "Environment", "Variable",
    "Release", "Decision", "AuditEvent",
]
