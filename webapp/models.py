"""Tables. Rules about how rows change live in releases.py, not here."""
from __future__ import annotations

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db

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


class User(UserMixin, db.Model):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    # What the session cookie names instead of the id: changing it (password reset,
    # deactivation) ends every session and remember-me cookie of the user at once.
    login_id: Mapped[str] = mapped_column(sa.String(64), unique=True, default=new_login_id)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    email: Mapped[str] = mapped_column(sa.String(255), default="")
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    is_admin: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    grants: Mapped[list[Grant]] = relationship(back_populates="user", cascade="all, delete-orphan")
    groups: Mapped[list[Group]] = relationship(secondary="group_members", back_populates="members",
                                               order_by="Group.name")

    @property
    def is_active(self) -> bool:  # flask-login signs out inactive users
        return self.active

    def get_id(self) -> str:
        return self.login_id

    def end_sessions(self) -> None:
        self.login_id = new_login_id()


group_members = sa.Table(
    "group_members", db.metadata,
    sa.Column("group_id", sa.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class Group(db.Model):
    """A named set of users: approval rules name groups, and a grant may go to a group."""

    __tablename__ = "groups"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(63), unique=True)
    description: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    members: Mapped[list[User]] = relationship(secondary=group_members, back_populates="groups",
                                               order_by="User.username")


class Grant(db.Model):
    """One permission for one user or one group (every member holds it while a member), for
    every environment (environment_id NULL) or one."""

    __tablename__ = "grants"
    __table_args__ = (
        sa.UniqueConstraint("user_id", "permission", "environment_id", name="uq_grants_scope"),
        sa.UniqueConstraint("group_id", "permission", "environment_id", name="uq_grants_group_scope"),
        sa.CheckConstraint("(user_id IS NULL) <> (group_id IS NULL)", name="user_or_group"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    group_id: Mapped[int | None] = mapped_column(sa.ForeignKey("groups.id", ondelete="CASCADE"), index=True)
    permission: Mapped[str] = mapped_column(sa.String(64))
    environment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("environments.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User | None] = relationship(back_populates="grants")
    group: Mapped[Group | None] = relationship()
    environment: Mapped[Environment | None] = relationship()


class ApiToken(db.Model):
    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(sa.String(100), default="")
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()


class Project(db.Model):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(63), unique=True)
    repo: Mapped[str] = mapped_column(sa.String(1000))
    branch: Mapped[str] = mapped_column(sa.String(255), default="main")
    hook_ref: Mapped[str | None] = mapped_column(sa.String(255))
    # Where a commit is shown on the web, e.g. https://git.example.com/shop/commit/{sha}
    web_url_template: Mapped[str | None] = mapped_column(sa.String(1000))
    # When releases may start applying (windows.py), for every environment without windows of its
    # own; its freezes hold for every environment, beside the environment's own.
    change_windows: Mapped[list] = mapped_column(sa.JSON, default=list, server_default="[]")
    freezes: Mapped[list] = mapped_column(sa.JSON, default=list, server_default="[]")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    environments: Mapped[list[Environment]] = relationship(
        back_populates="project", order_by="Environment.name")


class Environment(db.Model):
    __tablename__ = "environments"
    __table_args__ = (
        sa.UniqueConstraint("project_id", "name", name="uq_environments_project_name"),
        sa.CheckConstraint("NOT (approval_workflow AND parallel_releases)", name="one_mode"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(63))
    release_stream: Mapped[str] = mapped_column(sa.String(100))
    approval_workflow: Mapped[bool] = mapped_column(default=True)
    parallel_releases: Mapped[bool] = mapped_column(default=False)
    release_command: Mapped[str | None] = mapped_column(sa.Text)
    hook_ref: Mapped[str | None] = mapped_column(sa.String(255))  # overrides the project's
    hook_timeout_seconds: Mapped[int] = mapped_column(default=300)
    release_timeout_seconds: Mapped[int] = mapped_column(default=3600)
    allow_self_approval: Mapped[bool] = mapped_column(default=False)
    # Separation of duties: nobody who wrote or committed a change since the last release approves it.
    authors_may_not_approve: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    wait_for_external_finish: Mapped[bool] = mapped_column(default=False)
    approval_timeout_hours: Mapped[float | None]
    reminder_hours: Mapped[float | None]  # a pending release re-asks those still counting this often
    # Host paths the release command (never the hook) also sees in its sandbox:
    # [{"path": "/srv/shop", "writable": true}, …], each checked against SANDBOX_ALLOWED_PATHS
    # when set and again at every run (environments.release_command_binds).
    sandbox_paths: Mapped[list] = mapped_column(sa.JSON, default=list, server_default="[]")
    # Who must approve, and how many (approval_rules.py): [{"name", "group" | None, "approvals"}],
    # every rule met; the default is one approval from anyone who may approve.
    approval_rules: Mapped[list] = mapped_column(sa.JSON, default=lambda: [dict(rule) for rule in DEFAULT_RULES],
                                                 server_default=DEFAULT_RULES_JSON)
    # When releases may start applying (windows.py): NULL takes the project's windows; [] is always.
    change_windows: Mapped[list | None] = mapped_column(sa.JSON)
    freezes: Mapped[list] = mapped_column(sa.JSON, default=list, server_default="[]")
    # Emergency releases (releases.trigger with break_glass): allowed at all, and how soon after
    # one someone must review it.
    allow_break_glass: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    break_glass_review_hours: Mapped[float] = mapped_column(default=24.0, server_default="24")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    project: Mapped[Project] = relationship(back_populates="environments")
    variables: Mapped[list[Variable]] = relationship(
        back_populates="environment", order_by="Variable.name", cascade="all, delete-orphan")

    @property
    def mode(self) -> str:
        if self.parallel_releases:
            return "parallel"
        return "approval" if self.approval_workflow else "serial"


class Variable(db.Model):
    __tablename__ = "variables"
    __table_args__ = (sa.UniqueConstraint("environment_id", "name", name="uq_variables_environment_name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    environment_id: Mapped[int] = mapped_column(sa.ForeignKey("environments.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(128))
    value: Mapped[str] = mapped_column(sa.Text)
    secret: Mapped[bool] = mapped_column(default=False)
    for_hooks: Mapped[bool] = mapped_column(default=False)

    environment: Mapped[Environment] = relationship(back_populates="variables")


class Release(db.Model):
    __tablename__ = "releases"
    __table_args__ = (
        # Invariant 1: one slot holder per environment, enforced by the database.
        sa.Index("uq_releases_slot_holder", "environment_id", unique=True,
                 sqlite_where=sa.text("holds_slot"), postgresql_where=sa.text("holds_slot")),
        sa.Index("ix_releases_environment_state", "environment_id", "state", "id"),
        sa.Index("ix_releases_state", "state"),
        # An environment's history, newest first, a page at a time, without reading all of it.
        sa.Index("ix_releases_environment_history", "environment_id", "id"),
        # Retention walks finished releases in finishing order (retention.py).
        sa.Index("ix_releases_finished", "finished_at", "id"),
        # Emergency releases still to be reviewed: the banners and the overdue reviews.
        sa.Index("ix_releases_review_pending", "id",
                 sqlite_where=sa.text("break_glass_reason IS NOT NULL AND reviewed_at IS NULL"),
                 postgresql_where=sa.text("break_glass_reason IS NOT NULL AND reviewed_at IS NULL")),
        sa.UniqueConstraint("environment_id", "triggered_by_id", "idempotency_key",
                            name="uq_releases_idempotency"),
        sa.CheckConstraint("NOT holds_slot OR state IN ('READY', 'PENDING_APPROVAL', 'SCHEDULED', 'IN_PROGRESS')",
                           name="slot_only_when_active"),
        sa.CheckConstraint("kind IN ('RELEASE', 'BOT')", name="kind"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(16), default="RELEASE")
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    environment_id: Mapped[int] = mapped_column(sa.ForeignKey("environments.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(sa.String(32), default="QUEUED")
    holds_slot: Mapped[bool] = mapped_column(default=False)
    ref: Mapped[str | None] = mapped_column(sa.String(255))
    commit: Mapped[str | None] = mapped_column(sa.String(64))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    resources: Mapped[list] = mapped_column(sa.JSON)
    triggered_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(255))
    parent_release_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("releases.id", ondelete="SET NULL"), unique=True)

    hook_path: Mapped[str | None] = mapped_column(sa.String(500))
    hook_ref_commit: Mapped[str | None] = mapped_column(sa.String(64))
    hook_exit_code: Mapped[int | None]
    hook_output: Mapped[str] = mapped_column(sa.Text, default="")
    hook_truncated: Mapped[bool] = mapped_column(default=False)
    hook_started_at: Mapped[datetime | None]

    exec_command: Mapped[str | None] = mapped_column(sa.Text)
    exec_exit_code: Mapped[int | None]
    exec_output: Mapped[str] = mapped_column(sa.Text, default="")
    exec_truncated: Mapped[bool] = mapped_column(default=False)
    exec_started_at: Mapped[datetime | None]

    error: Mapped[str | None] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    pending_since: Mapped[datetime | None]  # when it began waiting for a decision
    reminded_at: Mapped[datetime | None]  # the last reminder of a pending release (reconcile.remind_pending)
    # Fixed when it starts waiting: the environment's rules with what the hook's verdict added
    # (NULL: the default rule), and the verdict's reason.
    approval_rules: Mapped[list | None] = mapped_column(sa.JSON)
    approval_reason: Mapped[str | None] = mapped_column(sa.Text)
    # A BOT release: the digest its approvals were given for (approval_rules.digest).
    approval_digest: Mapped[str | None] = mapped_column(sa.String(64))
    # What changed since the environment's last successful release (running/since.py); NULL until
    # the worker computed it.
    since: Mapped[dict | None] = mapped_column(sa.JSON)
    # SCHEDULED: why it waits ("waiting for the change window: opens …", "frozen until …") and
    # when it may start (NULL: no window will open).
    scheduled_reason: Mapped[str | None] = mapped_column(sa.Text)
    scheduled_until: Mapped[datetime | None]
    # An emergency release: why (NULL for every other release), when its review is due, the
    # review, and when the reconciler last re-announced it overdue.
    break_glass_reason: Mapped[str | None] = mapped_column(sa.Text)
    review_due_at: Mapped[datetime | None]
    reviewed_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    review_comment: Mapped[str | None] = mapped_column(sa.Text)
    reviewed_at: Mapped[datetime | None]
    review_announced_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]

    project: Mapped[Project] = relationship()
    environment: Mapped[Environment] = relationship()
    triggered_by: Mapped[User | None] = relationship(foreign_keys=[triggered_by_id])
    reviewed_by: Mapped[User | None] = relationship(foreign_keys=[reviewed_by_id])
    parent: Mapped[Release | None] = relationship(remote_side=[id], back_populates="bot_release")
    bot_release: Mapped[Release | None] = relationship(back_populates="parent", uselist=False)
    decisions: Mapped[list[Decision]] = relationship(back_populates="release", order_by="Decision.id")


class Decision(db.Model):
    """A reviewer's approve or reject: one rejection, or one approval per person that counted
    for the rules named in `rules`, given for what `digest` sums up (approval_rules.digest)."""

    __tablename__ = "decisions"
    __table_args__ = (sa.UniqueConstraint("release_id", "user_id", "decision", name="uq_decisions_once"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int] = mapped_column(sa.ForeignKey("releases.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    decision: Mapped[str] = mapped_column(sa.String(16))
    comment: Mapped[str] = mapped_column(sa.Text, default="")
    via: Mapped[str] = mapped_column(sa.String(16))
    rules: Mapped[list] = mapped_column(sa.JSON, default=list, server_default="[]")
    digest: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    release: Mapped[Release] = relationship(back_populates="decisions")
    user: Mapped[User | None] = relationship()


class AuditEvent(db.Model):
    __tablename__ = "audit_events"
    __table_args__ = (
        sa.Index("ix_audit_events_release", "release_id", "id"),
        # An environment's settings changes, newest first, without walking its releases' events.
        sa.Index("ix_audit_events_environment_settings", "environment_id", "id",
                 sqlite_where=sa.text("release_id IS NULL"), postgresql_where=sa.text("release_id IS NULL")),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    release_id: Mapped[int | None] = mapped_column(sa.ForeignKey("releases.id", ondelete="CASCADE"))
    environment_id: Mapped[int | None] = mapped_column(sa.ForeignKey("environments.id", ondelete="CASCADE"),
                                                       index=True)
    actor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(sa.String(32))
    from_state: Mapped[str | None] = mapped_column(sa.String(32))
    to_state: Mapped[str | None] = mapped_column(sa.String(32))
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    via: Mapped[str] = mapped_column(sa.String(16))
    details: Mapped[dict | None] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    actor: Mapped[User | None] = relationship()


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
