"""Who hears about what: outgoing mail, email links, webhooks, the Slack app."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .common import utcnow

if TYPE_CHECKING:
    from .core import Environment, Release, User


# -- email and webhooks (notify/) ---------------------------------

class OutgoingMail(db.Model):
    """One email to one person, sent by the worker and retried with backoff.

    Bodies are composed when sent and kept only in the development outbox (no
    MAIL_SERVER): there they hold live links, so nothing else stores them.
    """

    __tablename__ = "outgoing_mails"
    __table_args__ = (
        sa.UniqueConstraint("audit_event_id", "user_id", name="uq_outgoing_mails_event_user"),
        sa.Index("ix_outgoing_mails_status_due", "status", "next_attempt_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(32))  # approval_request, release_outcome, gate_weakened
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    to_address: Mapped[str] = mapped_column(sa.String(255))
    release_id: Mapped[int | None] = mapped_column(sa.ForeignKey("releases.id", ondelete="CASCADE"), index=True)
    environment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("environments.id", ondelete="CASCADE"))
    audit_event_id: Mapped[int | None] = mapped_column(sa.ForeignKey("audit_events.id", ondelete="SET NULL"))
    subject: Mapped[str] = mapped_column(sa.String(300), default="")
    body_text: Mapped[str] = mapped_column(sa.Text, default="")
    body_html: Mapped[str] = mapped_column(sa.Text, default="")
    links: Mapped[list | None] = mapped_column(sa.JSON)  # [{"label", "url"}], outbox only
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]

    user: Mapped[User | None] = relationship()
    release: Mapped[Release | None] = relationship()


class EmailLink(db.Model):
    """An Approve or Reject link: bound to one user, one release and the action it names
    (its page offers both); only the sha256 of its token is stored; it and the other link of
    its mail work once, together, and expire."""

    __tablename__ = "email_links"
    __table_args__ = (sa.CheckConstraint("action IN ('approve', 'reject')", name="action"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    release_id: Mapped[int] = mapped_column(sa.ForeignKey("releases.id", ondelete="CASCADE"), index=True)
    mail_id: Mapped[int | None] = mapped_column(sa.ForeignKey("outgoing_mails.id", ondelete="SET NULL"),
                                                index=True)
    action: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(sa.String(200))

    user: Mapped[User] = relationship()
    release: Mapped[Release] = relationship()


webhook_endpoint_environments = sa.Table(
    "webhook_endpoint_environments", db.metadata,
    sa.Column("endpoint_id", sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("environment_id", sa.ForeignKey("environments.id", ondelete="CASCADE"), primary_key=True),
)


class WebhookEndpoint(db.Model):
    """Where events are POSTed: all environments, or the ones listed."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (sa.CheckConstraint("format IN ('json', 'slack')", name="format"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    url: Mapped[str] = mapped_column(sa.String(2000))
    secret: Mapped[str] = mapped_column(sa.String(255))  # kept: the HMAC needs it
    events: Mapped[list] = mapped_column(sa.JSON)
    format: Mapped[str] = mapped_column(sa.String(16), default="json")
    all_environments: Mapped[bool] = mapped_column(default=True)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    environments: Mapped[list[Environment]] = relationship(secondary=webhook_endpoint_environments,
                                                           order_by="Environment.id")


class WebhookDelivery(db.Model):
    """One event for one endpoint. Retries send the same body under the same delivery id."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("audit_event_id", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),
        sa.Index("ix_webhook_deliveries_status_due", "status", "next_attempt_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[str] = mapped_column(sa.String(36), unique=True)
    endpoint_id: Mapped[int] = mapped_column(sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
                                             index=True)
    audit_event_id: Mapped[int | None] = mapped_column(sa.ForeignKey("audit_events.id", ondelete="SET NULL"))
    event: Mapped[str] = mapped_column(sa.String(40))
    release_id: Mapped[int | None] = mapped_column(sa.ForeignKey("releases.id", ondelete="SET NULL"))
    body: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    retries: Mapped[int] = mapped_column(default=0)  # failures since the first try or the last redeliver
    response_code: Mapped[int | None]
    duration_ms: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    history: Mapped[list | None] = mapped_column(sa.JSON)  # one entry per attempt
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]

    endpoint: Mapped[WebhookEndpoint] = relationship()


# -- the Slack app (notify/slack.py, notify/slack_links.py) ------------------------------

class SlackChannel(db.Model):
    """A Slack channel the app posts approval requests to: for every environment
    (environment_id NULL) or one."""

    __tablename__ = "slack_channels"
    __table_args__ = (sa.UniqueConstraint("channel", "environment_id", name="uq_slack_channels_scope"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[str] = mapped_column(sa.String(80))  # a channel id (C0123…) or #name
    environment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("environments.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    environment: Mapped[Environment | None] = relationship()


class SlackMessage(db.Model):
    """One approval request posted to one channel, kept so it can be updated (chat.update needs
    the channel and ts that chat.postMessage answered). "pending" whenever Slack shows less than
    the release now says; the worker posts or updates it, retried with backoff like a webhook."""

    __tablename__ = "slack_messages"
    __table_args__ = (
        sa.UniqueConstraint("audit_event_id", "channel", name="uq_slack_messages_event_channel"),
        sa.Index("ix_slack_messages_status_due", "status", "next_attempt_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = mapped_column(sa.ForeignKey("releases.id", ondelete="CASCADE"), index=True)
    audit_event_id: Mapped[int | None] = mapped_column(sa.ForeignKey("audit_events.id", ondelete="SET NULL"))
    channel: Mapped[str] = mapped_column(sa.String(80))  # as configured, then the id Slack answered
    ts: Mapped[str | None] = mapped_column(sa.String(32))  # None until posted
    shown: Mapped[str | None] = mapped_column(sa.String(64))  # what the last post or update showed (slack.shown_key)
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime | None]
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]

    release: Mapped[Release] = relationship()


class SlackLink(db.Model):
    """A Slack user (of one workspace) who acts in Slack as this Releasegate user."""

    __tablename__ = "slack_links"
    __table_args__ = (sa.UniqueConstraint("team_id", "slack_user_id", name="uq_slack_links_slack_user"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[str] = mapped_column(sa.String(32))
    slack_user_id: Mapped[str] = mapped_column(sa.String(32))
    slack_username: Mapped[str] = mapped_column(sa.String(100), default="")
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship()


class SlackLinkCode(db.Model):
    """A one-time code a user sends to the app (/releasegate link CODE) to link their Slack
    user: only its sha256 is stored; it works once and for minutes."""

    __tablename__ = "slack_link_codes"
    id: Mapped[int] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
