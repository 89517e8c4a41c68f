"""Webhooks: endpoints admins configure, signed JSON (or Slack) bodies, deliveries with
timeouts and exponential-backoff retries that keep one delivery id."""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
import urllib.error
import urllib.request
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import current_app

from .. import changes
from ..extensions import db
from ..intake.resources import DESTRUCTIVE_CHANGE_TYPES, InvalidInput
from ..intake.serialize import SETTINGS, iso, project_dict, release_dict
from ..models import AuditEvent, Environment, Release, User, WebhookDelivery, WebhookEndpoint, utcnow
from ..permissions import PermissionDenied
from ..releases import NotFound, ReleaseError
from ..transactions import Actor, after_commit, audit, begin_or_join_write, commit_changes, write_transaction
from .checked_http import LocalAddressRefused, address_kind, literal_address, local_address, opener
from .outbound import claim, retry_delay, worker_job

log = logging.getLogger(__name__)

EVENTS = ("release.queued", "release.pending_approval", "release.approved", "release.rejected",
          "release.succeeded", "release.failed", "release.cancelled", "release.reminder", "release.break_glass",
          "release.review_overdue", "environment.updated")
FORMATS = {"json": "JSON (event, release, environment, project, links)",
           "slack": "Slack-compatible (incoming webhook \u201ctext\u201d with links)"}
USER_AGENT = "Releasegate-Webhooks/1"
KEEP_HISTORY = 25
RESPONSE_SNIPPET = 300


# -- endpoints (admins only) ---------------------------------------------------------------------

def require_admin(user: User | None) -> None:
    if user is None or not getattr(user, "active", False) or not user.is_admin:
        raise PermissionDenied("Only admins can manage webhooks and read the mail log: they send release "
                               "data to other systems.")


def check_url(url: str) -> str:
    url = (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("The URL must start with http:// or https:// and name a host.")
    if len(url) > 2000:
        raise InvalidInput("The URL is longer than 2000 characters.")
    if parts.username or parts.password:
        raise InvalidInput("Put credentials in the secret, not in the URL.")
    address = literal_address(parts.hostname)
    if address is not None and local_address(address) and not current_app.config["WEBHOOK_ALLOW_LOCAL"]:
        # A name is judged when each delivery is sent (it may resolve elsewhere by then).
        raise InvalidInput(f"{parts.hostname} is {address_kind(address)} address: webhooks are not sent to this "
                           "machine or its link-local network unless WEBHOOK_ALLOW_LOCAL=1 is set. Private "
                           "addresses (10.x, 172.16–31.x, 192.168.x) are fine.")
    return url


def check_events(events: list[str]) -> list[str]:
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise InvalidInput(f"Unknown event {unknown[0]!r}; choose from {', '.join(EVENTS)}.")
    if not events:
        raise InvalidInput("Choose at least one event.")
    return [e for e in EVENTS if e in events]


def check_name(name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInput("Give the endpoint a name of 1 to 100 characters (e.g. \u201cJIRA\u201d).")
    return name


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def _environments(ids: list[int]) -> list[Environment]:
    found = list(db.session.scalars(sa.select(Environment).where(Environment.id.in_(ids)))) if ids else []
    if len(found) != len(set(ids)):
        raise InvalidInput("One of the chosen environments does not exist any more; reload the page.")
    return found


def _summary(endpoint: WebhookEndpoint) -> dict:
    return {"name": endpoint.name, "url": endpoint.url, "events": endpoint.events, "format": endpoint.format,
            "environments": "all" if endpoint.all_environments else
            [f"{e.project.name}/{e.name}" for e in endpoint.environments], "active": endpoint.active}


def create_endpoint(actor: Actor, *, name: str, url: str, secret: str, events: list[str], format: str = "json",
                    environment_ids: list[int] | None = None) -> WebhookEndpoint:
    """`environment_ids` None: every environment."""
    begin_or_join_write()
    require_admin(actor.user)
    if format not in FORMATS:
        raise InvalidInput(f"Unknown format {format!r}.")
    endpoint = WebhookEndpoint(name=name, url=url, secret=secret, events=events, format=format,
                               all_environments=environment_ids is None,
                               environments=_environments(environment_ids or []))
    db.session.add(endpoint)
    db.session.flush()
    audit(actor, "webhook", reason=f"webhook {name} created", details=_summary(endpoint))
    commit_changes()
    return endpoint


def update_endpoint(actor: Actor, endpoint_id: int, *, name: str, url: str, secret: str | None,
                    events: list[str], format: str, environment_ids: list[int] | None, active: bool) -> None:
    """`secret` None keeps the current one."""
    begin_or_join_write()
    require_admin(actor.user)
    endpoint = get_endpoint(endpoint_id)
    if format not in FORMATS:
        raise InvalidInput(f"Unknown format {format!r}.")
    endpoint.name, endpoint.url, endpoint.events, endpoint.format = name, url, events, format
    endpoint.all_environments = environment_ids is None
    endpoint.environments = _environments(environment_ids or [])
    endpoint.active = active
    if secret:
        endpoint.secret = secret
    audit(actor, "webhook", reason=f"webhook {name} changed{'; new secret' if secret else ''}",
          details=_summary(endpoint))
    commit_changes()


def delete_endpoint(actor: Actor, endpoint_id: int) -> None:
    begin_or_join_write()
    require_admin(actor.user)
    endpoint = get_endpoint(endpoint_id)
    audit(actor, "webhook", reason=f"webhook {endpoint.name} deleted with its delivery log",
          details=_summary(endpoint))
    db.session.delete(endpoint)
    commit_changes()


def get_endpoint(endpoint_id: int) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound(f"Webhook #{endpoint_id} does not exist.")
    return endpoint


def endpoints() -> list[WebhookEndpoint]:
    return list(db.session.scalars(sa.select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


def deliveries(endpoint_id: int, limit: int = 100) -> list[WebhookDelivery]:
    return list(db.session.scalars(sa.select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
                                   .order_by(WebhookDelivery.id.desc()).limit(limit)))


# -- what is sent ------------------------------------------------------------------------------

def base_url() -> str:
    return current_app.config["BASE_URL"]


def release_links(release: Release, event: str | None = None) -> dict[str, str]:
    base = base_url()
    environment = release.environment
    links = {"release": f"{base}/releases/{release.id}",
             "environment": f"{base}/projects/{release.project.name}/environments/{environment.name}",
             "api": f"{base}/api/v1/releases/{release.id}"}
    if event in ("release.pending_approval", "release.reminder"):
        links["approve"] = f"{base}/api/v1/releases/{release.id}/approve"
        links["reject"] = f"{base}/api/v1/releases/{release.id}/reject"
    return links


def _environment_settings(environment: Environment) -> dict:
    data = {"project": environment.project.name, "name": environment.name, "mode": environment.mode}
    data.update({key: getattr(environment, key) for key in SETTINGS})
    return data


def payload(event_name: str, audit_event: AuditEvent) -> dict[str, Any]:
    """The JSON body: event, release as in the API, environment, project, links."""
    environment = db.session.get(Environment, audit_event.environment_id)
    body: dict[str, Any] = {"event": event_name, "at": iso(audit_event.created_at),
                            "by": audit_event.actor.username if audit_event.actor else audit_event.via,
                            "via": audit_event.via, "reason": audit_event.reason}
    if audit_event.release_id is not None:
        release = db.session.get(Release, audit_event.release_id)
        body["release"] = release_dict(release)
        body["since_summary"] = changes.summary(release)  # what changed since the last release, in words
        body["links"] = release_links(release, event_name)
    else:
        body["release"] = None
        body["changes"] = (audit_event.details or {}).get("changes", {})
        body["weakens_gate"] = (audit_event.details or {}).get("weakens_gate", [])
        body["links"] = {"environment": f"{base_url()}/projects/{environment.project.name}/environments/"
                                        f"{environment.name}"}
    body["environment"] = _environment_settings(environment)
    project = project_dict(environment.project)
    body["project"] = {key: project[key] for key in ("name", "repo", "branch", "hook_ref")}
    return body


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(body: dict[str, Any]) -> str:
    """One line a chat channel reads: "shop/prod release #42 needs approval" with links."""
    event, environment = body["event"], body["environment"]
    where = _slack_escape(f"{environment['project']}/{environment['name']}")
    by = _slack_escape(body.get("by") or "")
    if body.get("release") is None:
        changes = ", ".join(f"{key} {_fmt(v.get('old'))} \u2192 {_fmt(v.get('new'))}"
                            for key, v in body.get("changes", {}).items())
        return (f"{where} settings changed by {by}; the approval gate is weaker "
                f"({_slack_escape(changes)}). <{body['links']['environment']}|Open {where}>")
    release = body["release"]
    number = f"release #{release['id']}"
    link = f"<{body['links']['release']}|Open {number}>"
    if event == "release.reminder":
        return f"{where} {number} is still waiting for approval ({_slack_escape(body.get('reason') or '')}). {link}"
    if event in ("release.break_glass", "release.review_overdue"):
        return _emergency_line(event, where, number, by, release.get("break_glass") or {}, link)
    if event == "release.pending_approval":
        resources = release["resources"]
        destructive = sum(1 for r in resources if r.get("changeType") in DESTRUCTIVE_CHANGE_TYPES)
        extra = f", {destructive} destructive" if destructive else ""
        text = (f"{where} {number} needs approval (triggered by {_slack_escape(release['triggered_by'] or '')}; "
                f"{len(resources)} change{'s' if len(resources) != 1 else ''}{extra}). {link}")
        return text + _since_lines(body)
    verbs = {"release.queued": f"was queued by {by}", "release.approved": f"was approved by {by}",
             "release.rejected": f"was rejected by {by}", "release.succeeded": "succeeded",
             "release.failed": "timed out" if release["state"] == "TIMED_OUT" else "failed",
             "release.cancelled": f"was cancelled by {by}"}
    text = f"{where} {number} {verbs.get(event, event)}"
    if event in ("release.rejected", "release.failed", "release.cancelled") and body.get("reason"):
        text += f": {_slack_escape(body['reason'][:300])}"
    return f"{text}. {link}"


def _emergency_line(event: str, where: str, number: str, by: str, break_glass: dict, link: str) -> str:
    due = (break_glass.get("review_due_at") or "").replace("T", " ")[:16] + " UTC"
    if event == "release.review_overdue":
        return (f"{where} emergency {number} is not reviewed yet: its review was due {due}. Someone who may "
                f"approve there, and did not trigger it, must review it. {link}")
    return (f"EMERGENCY: {where} {number} was triggered by {by}, skipping the hook, the approval rules and the "
            f"change windows: {_slack_escape((break_glass.get('reason') or '')[:300])}. Review due by {due}. {link}")


SLACK_COMMITS = 3


def _since_lines(body: dict[str, Any]) -> str:
    """The summary of what changed and the first commits, one line each."""
    if not body.get("since_summary"):
        return ""
    lines = [_slack_escape(body["since_summary"])]
    commits = ((body["release"] or {}).get("since") or {}).get("commits") or []
    for commit in commits[:SLACK_COMMITS]:
        undone = " (undone)" if commit.get("undone") else ""
        lines.append(f"\u2022 `{commit.get('sha', '')[:7]}` {_slack_escape(commit.get('subject', '')[:120])} \u2014 "
                     f"{_slack_escape(commit.get('author_name', ''))}{undone}")
    if len(commits) > SLACK_COMMITS:
        lines.append(f"\u2026 and {len(commits) - SLACK_COMMITS} more")
    return "\n" + "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None or value == "":
        return "(none)"
    return json.dumps(value) if isinstance(value, bool | int | float) else str(value)[:80]


def encode(endpoint: WebhookEndpoint, body: dict[str, Any]) -> str:
    if endpoint.format == "slack":
        return json.dumps({"text": slack_text(body)}, separators=(",", ":"))
    return json.dumps(body, separators=(",", ":"), sort_keys=True)


def sign(secret: str, body: bytes) -> str:
    """The X-Releasegate-Signature value: sha256=<hex HMAC-SHA256 of the exact body bytes>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def matching_endpoints(event_name: str, environment_id: int) -> list[WebhookEndpoint]:
    return [e for e in endpoints() if e.active and event_name in (e.events or [])
            and (e.all_environments or any(env.id == environment_id for env in e.environments))]


def add_deliveries(event_name: str, audit_event: AuditEvent) -> list[WebhookDelivery]:
    """Within the caller's transaction: one delivery per matching endpoint, body fixed now."""
    targets = matching_endpoints(event_name, audit_event.environment_id)
    if not targets:
        return []
    body = payload(event_name, audit_event)
    now = utcnow()
    made = []
    for endpoint in targets:
        delivery = WebhookDelivery(delivery_id=str(uuid.uuid4()), endpoint_id=endpoint.id,
                                   audit_event_id=audit_event.id, event=event_name,
                                   release_id=audit_event.release_id, body=encode(endpoint, body),
                                   status="pending", next_attempt_at=now, history=[])
        db.session.add(delivery)
        made.append(delivery)
    return made


# -- delivering ----------------------------------------------------------------------------------

def _post(url: str, secret: str, body: str, headers: dict[str, str]) -> tuple[int | None, str | None]:
    """POST once; (status code, error) where error is None on a 2xx answer. Raises
    LocalAddressRefused, having sent nothing, when the host resolves to a local address."""
    data = body.encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": USER_AGENT, **headers,
        "X-Releasegate-Signature": sign(secret, data)})
    try:
        with opener.open(request, timeout=current_app.config["WEBHOOK_TIMEOUT_SECONDS"]) as response:
            response.read(RESPONSE_SNIPPET)
            return response.status, None
    except urllib.error.HTTPError as error:
        snippet = error.read(RESPONSE_SNIPPET).decode(errors="replace").strip()
        return error.code, f"HTTP {error.code} {error.reason}" + (f": {snippet}" if snippet else "")
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        if isinstance(reason, LocalAddressRefused):
            raise reason from None  # not a failure of the receiver: deliver() gives up at once
        return None, f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__


@worker_job
def deliver(delivery_pk: int) -> str | None:
    """One attempt of one delivery (the job). Returns the new status, None when not due."""
    if not claim(WebhookDelivery, delivery_pk, utcnow()):
        return None
    delivery = db.session.get(WebhookDelivery, delivery_pk)
    endpoint = delivery.endpoint
    active, url, secret, body = endpoint.active, endpoint.url, endpoint.secret, delivery.body
    headers = {"X-Releasegate-Event": delivery.event, "X-Releasegate-Delivery": delivery.delivery_id,
               "X-Releasegate-Attempt": str(delivery.attempts)}
    db.session.rollback()  # no transaction stays open while we wait for the receiver
    started = time.monotonic()
    give_up = not active
    if active:
        try:
            code, error = _post(url, secret, body, headers)
        except LocalAddressRefused as refused:  # retrying would be refused again: recorded as failed
            code, error, give_up = None, f"Not sent: {refused}.", True
    else:
        code, error = None, "The endpoint is disabled; redeliver after enabling it."
    duration = int((time.monotonic() - started) * 1000)
    return _record(delivery_pk, code, error, duration, give_up=give_up)


def _record(delivery_pk: int, code: int | None, error: str | None, duration_ms: int, *, give_up: bool) -> str:
    now = utcnow()
    write_transaction()
    delivery = db.session.get(WebhookDelivery, delivery_pk)
    delivery_id, endpoint_id, attempt = delivery.delivery_id, delivery.endpoint_id, delivery.attempts
    retries = delivery.retries + (error is not None)
    delay = None if error is None or give_up else retry_delay(retries)
    status = "succeeded" if error is None else ("retrying" if delay is not None else "failed")
    entry = {"attempt": attempt, "at": iso(now), "code": code, "ms": duration_ms, "error": error}
    db.session.execute(
        sa.update(WebhookDelivery).where(WebhookDelivery.id == delivery_pk, WebhookDelivery.status == "sending")
        .values(status=status, retries=retries, response_code=code, duration_ms=duration_ms, last_error=error,
                last_attempt_at=now, history=[*(delivery.history or []), entry][-KEEP_HISTORY:],
                next_attempt_at=now + timedelta(seconds=delay) if delay is not None else None)
        .execution_options(synchronize_session=False))
    commit_changes()
    if error is not None:
        log.warning("webhook delivery %s to endpoint %s failed (attempt %s): %s; %s", delivery_id, endpoint_id,
                    attempt, error, f"next try in {delay} s" if delay is not None else "giving up")
    return status


def redeliver(actor: Actor, delivery_pk: int) -> WebhookDelivery:
    """Send a delivery again, same id and body, with a fresh round of retries."""
    begin_or_join_write()
    require_admin(actor.user)
    delivery = db.session.get(WebhookDelivery, delivery_pk)
    if delivery is None:
        raise NotFound(f"Delivery #{delivery_pk} does not exist.")
    moved = db.session.execute(
        sa.update(WebhookDelivery).where(WebhookDelivery.id == delivery_pk, WebhookDelivery.status != "sending")
        .values(status="pending", retries=0, next_attempt_at=utcnow())
        .execution_options(synchronize_session=False)).rowcount
    if moved != 1:
        db.session.rollback()
        raise ReleaseError("This delivery is being sent right now; wait for the attempt to finish.")
    audit(actor, "webhook", reason=f"delivery {delivery.delivery_id} ({delivery.event}) queued again",
          details={"delivery_id": delivery.delivery_id, "endpoint_id": delivery.endpoint_id})
    from worker.queues import enqueue_notify_job

    after_commit(enqueue_notify_job, "webhook", delivery_pk)
    commit_changes()
    return delivery
