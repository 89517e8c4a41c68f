"""The gate's own tables: people and what they may do (users, groups, grants, API tokens), and
what they release (projects, environments and their variables, releases, decisions, the audit
trail)."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from .common import DEFAULT_RULES, DEFAULT_RULES_JSON, new_login_id, utcnow


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


# -- projects, environments, releases ---------------------------------------------------------

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
