"""The Slack app's messages: a release waiting for approval is posted (chat.postMessage) to the
channels configured for its environment, with its summary and Approve / Reject buttons, and
the same message is rewritten (chat.update) whenever the release moves on, whoever moved it.

A webhook in the "slack" format cannot do this: an incoming webhook answers "ok", not the
message's ts, so its message can never be changed. The app posts with a bot token instead
(SLACK_BOT_TOKEN) and keeps each message's channel and ts (SlackMessage). A message row is
"pending" whenever Slack shows less than the release now says; `send_message` (a job) claims
it, renders the release as it is then, and posts or updates; failures retry like webhooks.
"""
from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from ..changes import summary as since_summary
from ..extensions import db
from ..intake.resources import InvalidInput, change_counts
from ..models import AuditEvent, Environment, Release, SlackChannel, SlackMessage, utcnow
from ..releases import NotFound
from ..transactions import Actor, audit, begin_or_join_write, commit_changes, write_transaction
from .checked_http import LocalAddressRefused, opener
from .outbound import claim, retry_delay, worker_job
from .webhooks import _slack_escape as escape
from .webhooks import require_admin

log = logging.getLogger(__name__)

APPROVE, REJECT = "releasegate_approve", "releasegate_reject"  # the buttons' action_id
USER_AGENT = "Releasegate-Slack/1"


def configured() -> bool:
    config = current_app.config
    return bool(config["SLACK_BOT_TOKEN"] and config["SLACK_SIGNING_SECRET"])


# -- channels (admins only) ----------------------------------------------------------------------

def check_channel(channel: str) -> str:
    channel = (channel or "").strip()
    if not channel or len(channel) > 80 or any(c.isspace() for c in channel):
        raise InvalidInput("Give the channel's id (e.g. C0123ABCD, under the channel's name → About) or its "
                           "#name, without spaces.")
    return channel


def channels() -> list[SlackChannel]:
    return list(db.session.scalars(sa.select(SlackChannel).order_by(SlackChannel.channel, SlackChannel.id)))


def add_channel(actor: Actor, channel: str, environment_id: int | None) -> SlackChannel:
    """`environment_id` None: approval requests of every environment go to `channel`."""
    begin_or_join_write()
    require_admin(actor.user)
    channel = check_channel(channel)
    environment = db.session.get(Environment, environment_id) if environment_id is not None else None
    if environment_id is not None and environment is None:
        raise InvalidInput("That environment does not exist any more; reload the page.")
    if db.session.scalar(sa.select(SlackChannel.id).where(
            SlackChannel.channel == channel, SlackChannel.environment_id.is_(environment_id)
            if environment_id is None else SlackChannel.environment_id == environment_id)) is not None:
        raise InvalidInput(f"{channel} already hears about {_scope(environment)}.")
    row = SlackChannel(channel=channel, environment_id=environment_id)
    db.session.add(row)
    db.session.flush()
    audit(actor, "slack", reason=f"Slack channel {channel} added for {_scope(environment)}",
          details={"channel": channel, "environment_id": environment_id})
    commit_changes()
    return row


def remove_channel(actor: Actor, channel_id: int) -> str:
    begin_or_join_write()
    require_admin(actor.user)
    row = db.session.get(SlackChannel, channel_id)
    if row is None:
        raise NotFound(f"Slack channel #{channel_id} is not configured.")
    name = row.channel
    audit(actor, "slack", reason=f"Slack channel {name} removed from {_scope(row.environment)}",
          details={"channel": name, "environment_id": row.environment_id})
    db.session.delete(row)
    commit_changes()
    return name


def _scope(environment: Environment | None) -> str:
    return f"{environment.project.name}/{environment.name}" if environment is not None else "every environment"


def recent_messages(limit: int = 50) -> list[SlackMessage]:
    return list(db.session.scalars(sa.select(SlackMessage).order_by(SlackMessage.id.desc()).limit(limit)))


# -- from an audit event to message rows (inside notify.announce's transaction) ---------------------

def messages_for(audit_event: AuditEvent) -> list[SlackMessage]:
    """A release began waiting for approval: one new message per channel of its environment.
    Anything else announced about a release that has messages marks them to be updated."""
    if audit_event.release_id is None or not current_app.config["SLACK_BOT_TOKEN"]:
        return []
    now = utcnow()
    if audit_event.action == "state" and audit_event.to_state == "PENDING_APPROVAL":
        targets = db.session.scalars(sa.select(SlackChannel.channel).where(
            sa.or_(SlackChannel.environment_id.is_(None), SlackChannel.environment_id == audit_event.environment_id)))
        made = [SlackMessage(release_id=audit_event.release_id, audit_event_id=audit_event.id, channel=channel,
                             status="pending", next_attempt_at=now) for channel in dict.fromkeys(targets)]
        db.session.add_all(made)
        return made
    # One being sent right now is left alone: its job sees what changed when it records (_record).
    ids = db.session.scalars(
        sa.update(SlackMessage).where(SlackMessage.release_id == audit_event.release_id,
                                      SlackMessage.status != "sending")
        .values(status="pending", next_attempt_at=now, last_error=None).returning(SlackMessage.id)
        .execution_options(synchronize_session=False)).all()
    return [db.session.get(SlackMessage, message_id) for message_id in ids]


# -- what a message says ----------------------------------------------------------------------------

def shown_key(release: Release) -> str:
    """What a message of `release` depends on: when this changes, Slack's copy is old."""
    return f"{release.state}:{len(release.decisions)}"


OUTCOMES = {"APPROVED": "approved", "REJECTED": "rejected", "CANCELLED": "withdrawn by its triggerer",
            "QUEUED": "back in the queue", "FAILED": "failed", "SUCCEEDED": "succeeded"}


def render(release: Release) -> dict:
    """chat.postMessage / chat.update's text and blocks for `release` as it is now: the summary,
    what changed since the last release in one line and, while it waits, Approve and Reject
    buttons; once decided, who decided instead."""
    environment = release.environment
    where = f"{environment.project.name}/{environment.name}"
    link = f"{current_app.config['BASE_URL']}/releases/{release.id}"
    triggered_by = release.triggered_by.username if release.triggered_by else "someone"
    counts = change_counts(release.resources or [])
    changes = ", ".join(f"{count} {escape(kind.lower())}" + (" :warning: *destructive*" if destructive else "")
                        for kind, count, destructive in counts) or "no resource changes"
    waiting = release.state == "PENDING_APPROVAL"
    headline = (f"*{escape(where)}* ({escape(environment.release_stream)}): <{link}|release #{release.id}> "
                + ("needs approval" if waiting else f"\u2014 {_outcome(release)}"))
    fields = [f"*Triggered by*\n{escape(triggered_by)}", f"*Changes*\n{changes}"]
    blocks: list[dict] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": headline}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": text} for text in fields]},
    ]
    since = since_summary(release)  # the one line the Slack-format webhook and the mail carry too
    if since:
        blocks.append({"type": "context", "elements": [  # commit authors wrote part of it: plain text
            {"type": "mrkdwn", "text": "*What changed:*"}, {"type": "plain_text", "text": since, "emoji": False}]})
    if release.approval_reason:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"*Hook:* {escape(release.approval_reason[:500])}"}]})
    approvals = [d for d in release.decisions if d.decision == "APPROVE"]
    if waiting and approvals:
        given = ", ".join(f"{d.user.username if d.user else 'someone'} ({', '.join(d.rules or [])})"
                          for d in approvals)
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"Approved so far: "
                                                        f"{escape(given)}"}]})
    if waiting:
        value = button_value(release)
        blocks.append({"type": "actions", "block_id": f"release-{release.id}", "elements": [
            {"type": "button", "action_id": APPROVE, "style": "primary", "value": value,
             "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": REJECT, "style": "danger", "value": value,
             "text": {"type": "plain_text", "text": "Reject"}}]})
    text = f"{where} release #{release.id} " + ("needs approval" if waiting else _outcome(release))
    return {"text": text, "blocks": blocks}


def _outcome(release: Release) -> str:
    """"approved by alice via slack: looks fine"; the decision, or what else became of it."""
    words = OUTCOMES.get(release.state, release.state.replace("_", " ").lower())
    decided = [d for d in release.decisions if d.decision == ("APPROVE" if release.state == "APPROVED" else "REJECT")]
    if release.state in ("APPROVED", "REJECTED") and decided:
        last = decided[-1]
        words += f" by {last.user.username if last.user else 'someone'} (via {last.via})"
        if last.comment:
            words += f": {escape(last.comment[:200])}"  # a decider's words, never a <!channel>
    elif release.state == "REJECTED" and release.error:
        words += f": {escape(release.error[:200])}"
    return words


def button_value(release: Release) -> str:
    """What a button carries: the release, and which wait for approval it was drawn for. A
    release sent back to the queue (by an emergency release) waits again with new changes; a
    button of the earlier wait must not decide that one (slack_links.decide)."""
    return f"{release.id}:{release.pending_since.isoformat() if release.pending_since else ''}"


# -- sending ---------------------------------------------------------------------------------------

class SlackRefused(Exception):
    """Slack answered ok: false (a wrong token, an unknown channel, the app not in the channel)."""


def call(method: str, body: dict) -> dict:
    """One Web API call (POST {SLACK_API_URL}/{method} with the bot token, JSON body), through
    the checked opener webhooks use. Raises SlackRefused, or OSError / ValueError."""
    config = current_app.config
    request = urllib.request.Request(
        f"{config['SLACK_API_URL']}/{method}", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT,
                 "Authorization": f"Bearer {config['SLACK_BOT_TOKEN']}"})
    with opener.open(request, timeout=config["WEBHOOK_TIMEOUT_SECONDS"]) as response:
        answer = json.loads(response.read(1_000_000) or b"{}")
    if not answer.get("ok"):
        raise SlackRefused(f"Slack refused {method}: {answer.get('error', 'no error given')}")
    return answer


def respond(response_url: str, body: dict) -> None:
    """POST a reply to an interaction's response_url (an ephemeral message to whoever clicked).
    Best effort: the decision is committed already, and the HTTP answer says the same."""
    request = urllib.request.Request(response_url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": USER_AGENT})
    try:
        with opener.open(request, timeout=3) as response:
            response.read(1000)
    except (urllib.error.URLError, OSError, ValueError) as error:
        log.warning("could not reply to Slack's response_url: %s", error)


@worker_job
def send_message(message_id: int) -> str | None:
    """Post or update one message (the job); None when it was not due."""
    if not claim(SlackMessage, message_id, utcnow()):
        return None
    message = db.session.get(SlackMessage, message_id)
    release = message.release
    body, key = render(release), shown_key(release)
    channel, ts, shown = message.channel, message.ts, message.shown
    db.session.rollback()  # no transaction stays open while Slack answers
    try:
        if ts is not None and key == shown:
            pass  # Slack shows this already (a reminder changes nothing a message says)
        elif ts is None:
            answer = call("chat.postMessage", {"channel": channel, **body})
            channel, ts = answer.get("channel") or channel, answer["ts"]
        else:
            call("chat.update", {"channel": channel, "ts": ts, **body})
        error, give_up = None, False
    except LocalAddressRefused as refused:
        error, give_up = f"Not sent: {refused}.", True
    except SlackRefused as refused:
        error, give_up = str(refused), False
    except (urllib.error.URLError, OSError, ValueError, KeyError) as failed:
        error, give_up = f"{type(failed).__name__}: {failed}", False
    return _record(message_id, channel, ts, key, error, give_up=give_up)


def _record(message_id: int, channel: str, ts: str | None, key: str, error: str | None, *, give_up: bool) -> str:
    write_transaction()
    message = db.session.get(SlackMessage, message_id)
    now = utcnow()
    # The ts is kept whatever happens next: without it a later update would post a second message.
    values: dict = {"channel": channel, "ts": ts, "last_error": error}
    if error is None:
        values.update(shown=key, sent_at=now)
        # A decision committed while this was being sent was left to us (messages_for): go again.
        stale = shown_key(message.release) != key
        values.update(status="pending" if stale else "sent", next_attempt_at=now if stale else None)
    else:
        delay = None if give_up else retry_delay(message.attempts)
        values.update(status="retrying" if delay is not None else "failed",
                      next_attempt_at=now + timedelta(seconds=delay) if delay is not None else None)
    db.session.execute(sa.update(SlackMessage).where(SlackMessage.id == message_id, SlackMessage.status == "sending")
                       .values(**values).execution_options(synchronize_session=False))
    status = values["status"]
    commit_changes()
    if error is not None:
        log.warning("Slack message %s to %s failed (attempt %s): %s", message_id, channel, message.attempts, error)
    if status == "pending":
        from worker.queues import enqueue_notify_job

        enqueue_notify_job("slack", message_id)
    return status
