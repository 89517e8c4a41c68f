"""RQ jobs: imperative verbs taking ids. They re-read the row and do nothing unless it is in
the state they expect."""
from __future__ import annotations

from webapp.notify import mail, slack, webhooks
from webapp.running import runner


def run_pre_release_hook(release_id: int) -> None:
    runner.run_pre_release_hook(release_id)


def execute_release(release_id: int) -> None:
    runner.execute_release(release_id)


def announce_event(audit_event_id: int) -> None:
    mail.announce(audit_event_id)


def send_mail(mail_id: int) -> None:
    mail.send_mail(mail_id)


def deliver_webhook(delivery_id: int) -> None:
    webhooks.deliver(delivery_id)


def send_slack_message(message_id: int) -> None:
    slack.send_message(message_id)
