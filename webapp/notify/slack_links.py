"""Who is asking from Slack, and their decisions: Slack's request signature, the one-time codes
that link a Slack user to a Releasegate user, and approving or rejecting as that user.

A Slack user acts as the Releasegate user who linked them, through the same
releases.approve / releases.reject as every other door (Actor(user, "slack")), so the
permission, self-approval, the rules and the one-transition rule hold here too.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from .. import releases
from ..extensions import db
from ..models import Release, SlackLink, SlackLinkCode, User, utcnow
from ..permissions import PermissionDenied, decide_refusal
from ..transactions import Actor, audit, begin_or_join_write, commit_changes
from . import slack as messages

MAX_SKEW_SECONDS = 5 * 60  # Slack's advice: older requests may be replays
CODE_MINUTES = 10
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read off a screen, typed into Slack
CODE_LENGTH = 10  # 50 bits


# -- Slack's signature ----------------------------------------------------------------------------

def signature(secret: str, timestamp: str, body: bytes) -> str:
    """v0= + hex HMAC-SHA256 of "v0:{timestamp}:{body}" with the app's signing secret."""
    return "v0=" + hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256).hexdigest()


def signed_by_slack(timestamp: str | None, given: str | None, body: bytes, now: float | None = None) -> bool:
    """Whether a request carries Slack's signature of its exact body, made within five minutes
    either way. Without SLACK_SIGNING_SECRET nothing is."""
    secret = current_app.config["SLACK_SIGNING_SECRET"]
    if not secret or not timestamp or not given or not (timestamp.isascii() and timestamp.isdigit()
                                                         and len(timestamp) <= 12):
        return False
    if abs((now if now is not None else time.time()) - int(timestamp)) > MAX_SKEW_SECONDS:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body).encode(), given.encode())


# -- linking ---------------------------------------------------------------------------------------

def _hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def normalise(code: str) -> str:
    """"abcde-fghjk" → "ABCDEFGHJK": dashes and spaces are for reading only."""
    return "".join(c for c in (code or "").upper() if c not in "- ")


def issue_code(user: User) -> str:
    """A new code for `user` (shown once, never stored); their earlier unused codes stop working."""
    begin_or_join_write()
    db.session.execute(sa.delete(SlackLinkCode).where(SlackLinkCode.user_id == user.id,
                                                      SlackLinkCode.used_at.is_(None)))
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    now = utcnow()
    db.session.add(SlackLinkCode(code_hash=_hash(code), user_id=user.id, created_at=now,
                                 expires_at=now + timedelta(minutes=CODE_MINUTES)))
    commit_changes()
    return f"{code[:5]}-{code[5:]}"


def links_of(user: User) -> list[SlackLink]:
    return list(db.session.scalars(sa.select(SlackLink).where(SlackLink.user_id == user.id).order_by(SlackLink.id)))


def unlink(user: User, link_id: int) -> None:
    """A user ends one of their own links (someone else's id changes nothing)."""
    begin_or_join_write()
    link = db.session.scalar(sa.select(SlackLink).where(SlackLink.id == link_id, SlackLink.user_id == user.id))
    if link is not None:
        audit(Actor(user, "ui"), "slack", reason=f"Slack user {link.slack_username or link.slack_user_id} unlinked")
        db.session.delete(link)
    commit_changes()


def link(team_id: str, slack_user_id: str, slack_username: str, code: str) -> str:
    """Use a code: the Slack user acts as its Releasegate user from now on. Returns the sentence
    Slack shows (ephemeral). A wrong, used or expired code changes nothing."""
    begin_or_join_write()
    now = utcnow()
    found = db.session.scalar(sa.select(SlackLinkCode).where(SlackLinkCode.code_hash == _hash(normalise(code))))
    if found is None:
        db.session.rollback()
        return ("That code is not a Releasegate code. Copy it again from your Releasegate page "
                "(your name \u2192 API tokens \u2192 Slack), or make a new one there.")
    if found.used_at is not None:
        db.session.rollback()
        return "That code was used already; each code works once. Make a new one on your Releasegate page."
    if found.expires_at <= now:
        db.session.rollback()
        return (f"That code expired (codes work for {CODE_MINUTES} minutes). Make a new one on your "
                "Releasegate page.")
    user = db.session.get(User, found.user_id)
    if not user.active:
        db.session.rollback()
        return "The Releasegate account of that code is deactivated; nothing was linked."
    burned = db.session.execute(
        sa.update(SlackLinkCode).where(SlackLinkCode.id == found.id, SlackLinkCode.used_at.is_(None))
        .values(used_at=now).execution_options(synchronize_session=False)).rowcount
    if burned != 1:
        db.session.rollback()
        return "That code was used already; each code works once. Make a new one on your Releasegate page."
    existing = db.session.scalar(sa.select(SlackLink).where(SlackLink.team_id == team_id,
                                                           SlackLink.slack_user_id == slack_user_id))
    if existing is None:
        db.session.add(SlackLink(team_id=team_id, slack_user_id=slack_user_id,
                                 slack_username=slack_username[:100], user_id=user.id))
        try:
            db.session.flush()
        except sa.exc.IntegrityError:  # another code linked this Slack user since we looked (PostgreSQL)
            db.session.rollback()  # and with it this code's burn
            return ("Another code linked this Slack user at the same moment; nothing was linked with this "
                    "one, and it still works: send it again to act as its Releasegate user instead.")
    else:  # the Slack user proved they are this Releasegate user now
        existing.user_id, existing.slack_username = user.id, slack_username[:100]
    audit(Actor(user, "slack"), "slack", reason=f"Slack user {slack_username or slack_user_id} linked",
          details={"team_id": team_id, "slack_user_id": slack_user_id})
    username = user.username
    commit_changes()
    return f"Linked: in Slack you now act as {username} in Releasegate, with {username}'s permissions."


def linked_user(team_id: str, slack_user_id: str) -> User | None:
    return db.session.scalar(sa.select(User).join(SlackLink, SlackLink.user_id == User.id)
                             .where(SlackLink.team_id == team_id, SlackLink.slack_user_id == slack_user_id))


# -- deciding --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reply:
    """What the Slack user is told (ephemeral) and whether anything changed."""

    text: str
    decided: bool = False


NOT_LINKED = ("Your Slack user is not linked to a Releasegate user, so nothing was changed. On your Releasegate "
              "page (your name \u2192 API tokens \u2192 Slack) make a code, then send `/releasegate link CODE` here.")


def decide(team_id: str, slack_user_id: str, action: str, release_id: int, drawn_for: str,
           comment: str = "") -> Reply:
    """Approve or reject `release_id` as the Releasegate user linked to this Slack user, or say why
    not. `drawn_for` is the button's value (slack.button_value): a button of an earlier wait for
    approval decides nothing."""
    user = linked_user(team_id, slack_user_id)
    if user is None:
        return Reply(NOT_LINKED)
    if not user.active:
        return Reply(f"Your Releasegate user {user.username} is deactivated, so nothing was changed.")
    release = db.session.get(Release, release_id)
    if release is None:
        return Reply(f"Release #{release_id} does not exist any more; nothing was changed.")
    refused = decide_refusal(release, user)  # said before the state: an outsider learns nothing more
    if refused is not None:
        return Reply(f"{refused} Nothing was changed.")
    if release.state == "PENDING_APPROVAL" and drawn_for != messages.button_value(release):
        return Reply(f"This button was drawn before release #{release_id} went back to the queue and waited for "
                     "approval again, with what changed since compared anew; decide from its newest message or "
                     "its page. Nothing was changed.")
    state_machine = releases.approve if action == "approve" else releases.reject
    try:
        result = state_machine(release_id, Actor(user, "slack"), comment)
    except (releases.ReleaseError, PermissionDenied) as error:
        db.session.rollback()
        return Reply(str(error))
    if action == "reject":
        return Reply(f"You rejected release #{release_id}.", decided=True)
    if result.id == release_id:  # rules remain
        return Reply(f"Your approval of release #{release_id} counted; other rules still need approvals.",
                     decided=True)
    return Reply(f"You approved release #{release_id}; bot release #{result.id} carries it out.", decided=True)
