"""Approve and Reject links in mail: a random token per user, release and named action.

Only the token's sha256 is stored. Opening a link changes nothing (mail scanners fetch
and even click links); the decision is a POST by the signed-in addressee that burns the
token and its counterpart (the other link of the same mail: either may approve or reject) with
one compare-and-set in the same transaction as the normal approve or reject.
"""
from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from flask import current_app

from .. import approval_rules, releases
from ..extensions import db
from ..models import EmailLink, Release, User, utcnow
from ..permissions import PermissionDenied, decide_refusal, has_permission
from ..transactions import Actor, write_transaction

ACTIONS = ("approve", "reject")
TOKEN_BYTES = 32


def token_hash(token: str) -> str:
    # 256 random bits: a fast hash is enough, as for API tokens.
    return hashlib.sha256(token.encode()).hexdigest()


def issue(user_id: int, release_id: int, action: str, *, mail_id: int | None = None,
          now: datetime | None = None) -> str:
    """Add a link to the session (the caller commits); return its token, which is never stored."""
    if action not in ACTIONS:
        raise ValueError(f"unknown link action {action!r}")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    now = now or utcnow()
    db.session.add(EmailLink(token_hash=token_hash(token), user_id=user_id, release_id=release_id,
                             action=action, mail_id=mail_id, created_at=now,
                             expires_at=now + timedelta(hours=current_app.config["EMAIL_LINK_HOURS"])))
    return token


def find(token: str) -> EmailLink | None:
    if not token or len(token) > 200:
        return None
    return db.session.scalar(sa.select(EmailLink).where(EmailLink.token_hash == token_hash(token)))


@dataclass(frozen=True)
class Refusal:
    """Why a link cannot be used now: `kind` for tests and templates, `message` for people."""

    kind: str  # unknown, foreign, used, revoked, expired, decided, not_allowed, not_counting
    message: str
    status: int


UNKNOWN = Refusal("unknown", "This link is not a valid Releasegate link. Check that the whole address was "
                  "copied, or open the release from the dashboard.", 404)
FOREIGN = Refusal("foreign", "This link was sent to someone else, so it does not work for you. Sign in as the "
                  "person it was sent to, or decide from the release page if you may.", 403)


def refusal(link: EmailLink | None, user: User, now: datetime | None = None, *,
            action: str | None = None) -> Refusal | None:
    """None when `user` may use `link` now to `action` (default: the link's own action);
    otherwise which reason stops it (nothing changes)."""
    if link is None:
        return UNKNOWN
    action = action or link.action
    if link.user_id != user.id:
        return FOREIGN
    if link.used_at is not None:
        return Refusal("used", f"This link was already used on {link.used_at:%Y-%m-%d at %H:%M} UTC; "
                       "each link works once. The release page shows what happened since.", 409)
    if link.revoked_at is not None:
        return Refusal("revoked", f"This link no longer works: {link.revoked_reason or 'it was revoked'}.", 410)
    if link.expires_at <= (now or utcnow()):
        return Refusal("expired", f"This link expired on {link.expires_at:%Y-%m-%d at %H:%M} UTC. Decide from "
                       "the release page instead.", 410)
    release = link.release
    if release.state != "PENDING_APPROVAL":
        state = release.state.replace("_", " ").lower()
        return Refusal("decided", f"Release #{release.id} is no longer waiting for a decision (it is {state}), "
                       "so this link no longer works; nothing was changed.", 409)
    if not user.active or not has_permission(user, "approve_release", release.environment):
        return Refusal("not_allowed", "You no longer hold the \u201cRelease Approval/Reject\u201d permission on "
                       f"{release.project.name}/{release.environment.name}, so this link no longer works.", 403)
    refused = decide_refusal(release, user)  # the triggerer, an author: the state machine's own sentence
    if refused is not None:
        return Refusal("not_allowed", refused, 403)
    progress = approval_rules.progress(release)
    if action == "approve" and not progress.counts_for(user):
        return Refusal("not_counting", progress.why_not(user), 409)  # the sentence releases.approve refuses with
    if action == "reject" and not progress.may_reject(user):
        return Refusal("not_allowed", f"{approval_rules.reject_refusal(progress)} This link does not work for you.",
                       403)
    return None


def counterpart(link: EmailLink) -> EmailLink | None:
    """The other link of the same mail: same addressee, release and mail, the other action,
    issued in the same moment (compose.py issues the pair with one `now`; a mail composed again
    after a failed attempt gets a new pair, and the old one was revoked). At most one link
    matches; the other action is never `link` itself."""
    return db.session.scalar(sa.select(EmailLink).where(
        EmailLink.user_id == link.user_id, EmailLink.release_id == link.release_id,
        EmailLink.mail_id.is_not_distinct_from(link.mail_id), EmailLink.created_at == link.created_at,
        EmailLink.action != link.action))


def pair_refusal(link: EmailLink | None, user: User, action: str | None = None,
                 now: datetime | None = None) -> Refusal | None:
    """None when `user` may `action` through `link` now: the link and its counterpart must both
    still work, since the two links of one mail decide once. A link without a counterpart
    (issued alone) decides only its own action."""
    refused = refusal(link, user, now, action=action)
    if refused is not None or link is None:
        return refused
    action = action or link.action
    other = counterpart(link)
    if other is None:
        if action != link.action:
            return Refusal("not_allowed", f"This link can only {link.action} release #{link.release_id}; "
                           "decide from the release page instead.", 403)
        return None
    if other.used_at is not None:
        return Refusal("used", f"The other link of this mail was already used on {other.used_at:%Y-%m-%d at %H:%M} "
                       "UTC; the Approve and Reject links of one mail decide once. The release page shows what "
                       "happened since.", 409)
    return refusal(other, user, now, action=action)


def allowed_actions(link: EmailLink, user: User) -> list[str]:
    """Which decisions the confirmation page of `link` offers `user` (in ACTIONS order)."""
    return [action for action in ACTIONS if pair_refusal(link, user, action) is None]


@dataclass(frozen=True)
class Decided:
    release: Release
    action: str
    bot_release_id: int | None  # None after an approval that left rules unmet


def decide(token: str, user: User, action: str, comment: str = "") -> Decided | Refusal:
    """Burn the link and its counterpart and approve or reject their release, in one
    transaction, or refuse.

    Either link of a mail may approve or reject; both are judged on current rows inside the
    write transaction and burnt together by one compare-and-set, so the pair decides at most
    once. The normal state-machine function joins this transaction and commits burn and
    decision together: a refused decision leaves the links unused, used links always have their
    decision. Same permission check, same exactly-once rule as every other door.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown link action {action!r}")
    write_transaction()
    link = find(token)
    now = utcnow()
    refused = pair_refusal(link, user, action, now)
    if refused is not None:
        db.session.rollback()
        return refused
    other = counterpart(link)
    pair = [link.id] + ([other.id] if other is not None else [])
    release_id = link.release_id
    burn = (sa.update(EmailLink).where(EmailLink.id.in_(pair), EmailLink.user_id == user.id,
                                       EmailLink.used_at.is_(None), EmailLink.revoked_at.is_(None),
                                       EmailLink.expires_at > now)
            .values(used_at=now))
    # no mutate: synchronize_session=None syncs nothing either (SQLAlchemy 2 reads only its four values)
    burned = db.session.execute(burn.execution_options(synchronize_session=False)).rowcount  # pragma: no mutate
    if burned != len(pair):  # another request used one first (or it ended meanwhile)
        db.session.rollback()
        return pair_refusal(find(token), user, action) or UNKNOWN
    state_machine = releases.approve if action == "approve" else releases.reject
    try:
        result = state_machine(release_id, Actor(user, "email"), comment)  # joins this transaction
    except (releases.ReleaseError, PermissionDenied):
        db.session.rollback()
        return pair_refusal(find(token), user, action) or Refusal(
            "decided", "The release was decided meanwhile; nothing was changed.", 409)
    release = db.session.get(Release, release_id)
    return Decided(release, action, result.id if action == "approve" and result.id != release_id else None)
