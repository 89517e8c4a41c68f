"""Admin pages for integrations: webhook endpoints with their delivery log ("redeliver"),
the Slack app's channels, the mail log, and the development outbox (only while MAIL_SERVER
is unset).

Thin: changes go through notify/webhooks.py, which checks that the actor is an admin.
"""
from __future__ import annotations

import json

import sqlalchemy as sa
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import login_required

from ..extensions import db
from ..intake.ids import parse_id
from ..intake.resources import InvalidInput
from ..models import Environment, OutgoingMail, Project, WebhookDelivery
from ..notify import mail as notify
from ..notify import slack, webhooks
from ..permissions import require_permission
from .web import signed_in_user, ui_actor

integrations = Blueprint("integrations", __name__, url_prefix="/admin")

# The HTML part of an outbox mail is shown on its own: mail HTML needs inline styles,
# which the pages' policy forbids; nothing in it may run, be framed or send a form.
MAIL_HTML_POLICY = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
                    "form-action 'none'; frame-ancestors 'none'")




def _admin_only() -> None:
    webhooks.require_admin(signed_in_user())


def _environments() -> list[Environment]:
    return list(db.session.scalars(sa.select(Environment).join(Project).order_by(Project.name, Environment.name)))


# -- webhook endpoints -------------------------------------------------------------------------

def _form() -> tuple[dict, dict[str, str]]:
    """The endpoint form, checked field by field: (values, errors)."""
    form = request.form
    values = {"name": form.get("name", "").strip(), "url": form.get("url", "").strip(),
              "secret": form.get("secret", "").strip(), "events": form.getlist("events"),
              "format": form.get("format", "json"), "scope": form.get("scope", "all"),
              "environment_ids": [], "active": "active" in form}
    errors: dict[str, str] = {}
    for key, check in (("name", webhooks.check_name), ("url", webhooks.check_url),
                       ("events", webhooks.check_events)):
        try:
            values[key] = check(values[key])
        except InvalidInput as error:
            errors[key] = error.message
    if values["format"] not in webhooks.FORMATS:
        errors["format"] = "Choose JSON or Slack."
    if values["secret"] and len(values["secret"]) < 16:
        errors["secret"] = "Use a secret of at least 16 characters, or leave it empty for a random one."
    if values["scope"] == "some":
        chosen = [parse_id(v) for v in request.form.getlist("environments")]
        if None in chosen:
            errors["environments"] = "Choose environments from the list."
        else:
            values["environment_ids"] = chosen
        if not values["environment_ids"]:
            errors.setdefault("environments", "Choose at least one environment, or all environments.")
    return values, errors


def _render_list(values: dict | None = None, errors: dict | None = None, status: int = 200, new_secret=None):
    return render_template("integrations/webhooks.html", endpoints=webhooks.endpoints(), events=webhooks.EVENTS,
                           formats=webhooks.FORMATS, environments=_environments(), values=values or {},
                           errors=errors or {}, new_secret=new_secret,
                           outbox_on=not current_app.config["MAIL_SERVER"]), status


@integrations.get("/webhooks")
@login_required
def webhook_list():
    _admin_only()
    return _render_list()


@integrations.post("/webhooks")
@login_required
@require_permission("manage_users")
def create_webhook():
    _admin_only()
    values, errors = _form()
    if errors:
        return _render_list(values, errors, 422)
    secret = values["secret"] or webhooks.new_secret()
    endpoint = webhooks.create_endpoint(
        ui_actor(), name=values["name"], url=values["url"], secret=secret, events=values["events"],
        format=values["format"], environment_ids=values["environment_ids"] if values["scope"] == "some" else None)
    if values["secret"]:
        flash(f"Webhook {endpoint.name} created.", "success")
        return redirect(url_for("integrations.webhook", endpoint_id=endpoint.id))
    # A generated secret is shown once, on this page (not in a flash: that is a cookie).
    return _render_list(new_secret={"endpoint": endpoint.name, "secret": secret}, status=201)


def _render_endpoint(endpoint_id: int, values: dict | None = None, errors: dict | None = None, status: int = 200):
    endpoint = webhooks.get_endpoint(endpoint_id)
    if values is None:
        values = {"name": endpoint.name, "url": endpoint.url, "events": endpoint.events, "format": endpoint.format,
                  "scope": "all" if endpoint.all_environments else "some",
                  "environment_ids": [e.id for e in endpoint.environments], "active": endpoint.active}
    return render_template("integrations/webhook.html", endpoint=endpoint, deliveries=webhooks.deliveries(endpoint.id),
                           events=webhooks.EVENTS, formats=webhooks.FORMATS, environments=_environments(),
                           values=values, errors=errors or {}), status


@integrations.get("/webhooks/<int:endpoint_id>")
@login_required
def webhook(endpoint_id: int):
    _admin_only()
    return _render_endpoint(endpoint_id)


@integrations.post("/webhooks/<int:endpoint_id>")
@login_required
@require_permission("manage_users")
def update_webhook(endpoint_id: int):
    _admin_only()
    values, errors = _form()
    if errors:
        return _render_endpoint(endpoint_id, values, errors, 422)
    webhooks.update_endpoint(ui_actor(), endpoint_id, name=values["name"], url=values["url"],
                             secret=values["secret"] or None, events=values["events"], format=values["format"],
                             environment_ids=values["environment_ids"] if values["scope"] == "some" else None,
                             active=values["active"])
    flash("Webhook saved.", "success")
    return redirect(url_for("integrations.webhook", endpoint_id=endpoint_id))


@integrations.post("/webhooks/<int:endpoint_id>/delete")
@login_required
@require_permission("manage_users")
def delete_webhook(endpoint_id: int):
    _admin_only()
    name = webhooks.get_endpoint(endpoint_id).name
    webhooks.delete_endpoint(ui_actor(), endpoint_id)
    flash(f"Webhook {name} deleted with its delivery log.", "success")
    return redirect(url_for("integrations.webhook_list"))


def _delivery(delivery_id: int) -> WebhookDelivery:
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None:
        abort(404, f"Delivery #{delivery_id} does not exist.")
    return delivery


@integrations.get("/webhooks/deliveries/<int:delivery_id>")
@login_required
def delivery(delivery_id: int):
    _admin_only()
    found = _delivery(delivery_id)
    try:
        body = json.dumps(json.loads(found.body), indent=2, sort_keys=True)
    except ValueError:
        body = found.body
    return render_template("integrations/delivery.html", delivery=found, body=body)


@integrations.post("/webhooks/deliveries/<int:delivery_id>/redeliver")
@login_required
@require_permission("manage_users")
def redeliver(delivery_id: int):
    _admin_only()
    found = webhooks.redeliver(ui_actor(), delivery_id)
    flash(f"Delivery {found.delivery_id} is queued again with the same id and body.", "success")
    return redirect(url_for("integrations.webhook", endpoint_id=found.endpoint_id))


# -- the Slack app: which channels hear about which environments ------------------------------------

def _render_slack(values: dict | None = None, errors: dict | None = None, status: int = 200):
    return render_template("integrations/slack.html", configured=slack.configured(), channels=slack.channels(),
                           messages=slack.recent_messages(), environments=_environments(), values=values or {},
                           errors=errors or {}), status


@integrations.get("/slack")
@login_required
def slack_settings():
    _admin_only()
    return _render_slack()


@integrations.post("/slack/channels")
@login_required
@require_permission("manage_users")
def add_slack_channel():
    _admin_only()
    values = {"channel": request.form.get("channel", ""), "environment": request.form.get("environment", "")}
    environment_id = parse_id(values["environment"]) if values["environment"] else None
    if values["environment"] and environment_id is None:
        return _render_slack(values, {"environment": "Choose an environment from the list."}, 422)
    try:
        added = slack.add_channel(ui_actor(), values["channel"], environment_id)
    except InvalidInput as error:
        return _render_slack(values, {"channel": error.message}, 422)
    flash(f"{added.channel} will be sent approval requests.", "success")
    return redirect(url_for("integrations.slack_settings"))


@integrations.post("/slack/channels/<int:channel_id>/delete")
@login_required
@require_permission("manage_users")
def delete_slack_channel(channel_id: int):
    _admin_only()
    name = slack.remove_channel(ui_actor(), channel_id)
    flash(f"{name} is sent no more approval requests for that scope; its messages stay as they are.", "success")
    return redirect(url_for("integrations.slack_settings"))


# -- mail ------------------------------------------------------------------------------------------

@integrations.get("/mail")
@login_required
def mail_log():
    _admin_only()
    return render_template("integrations/mail_log.html", mails=notify.recent_mails(),
                           outbox_on=not current_app.config["MAIL_SERVER"])


def _outbox_only() -> None:
    _admin_only()
    if current_app.config["MAIL_SERVER"]:
        abort(404, "The outbox exists only in development, while MAIL_SERVER is unset: it holds live links. "
                   "Mail is sent through the mail server; the mail log shows what was sent.")


def _outbox_mail(mail_id: int) -> OutgoingMail:
    mail = db.session.get(OutgoingMail, mail_id)
    if mail is None or mail.status != "outbox":
        abort(404, f"There is no mail #{mail_id} in the outbox.")
    return mail


@integrations.get("/outbox")
@login_required
def outbox():
    _outbox_only()
    # The links in these mails start with BASE_URL; opened from another address they lead nowhere.
    base_url, here = current_app.config["BASE_URL"], request.host_url.rstrip("/")
    return render_template("integrations/outbox.html", mails=notify.recent_mails(outbox_only=True),
                           base_url=base_url, here=here if here != base_url else None)


@integrations.get("/outbox/<int:mail_id>")
@login_required
def outbox_mail(mail_id: int):
    _outbox_only()
    return render_template("integrations/outbox_mail.html", mail=_outbox_mail(mail_id))


@integrations.get("/outbox/<int:mail_id>/html")
@login_required
def outbox_mail_html(mail_id: int) -> Response:
    _outbox_only()
    response = make_response(_outbox_mail(mail_id).body_html)
    response.headers["Content-Security-Policy"] = MAIL_HTML_POLICY
    response.headers["Referrer-Policy"] = "same-origin"
    return response
