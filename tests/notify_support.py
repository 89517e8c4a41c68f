"""Test building blocks for mail and webhooks: a real SMTP server (aiosmtpd) that keeps
what it receives, link parsing, and a snapshot of what a link could change."""
from __future__ import annotations

import email
import email.policy
import re
import socket
import threading
from email.message import EmailMessage
from urllib.parse import urlsplit

import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

LINK = re.compile(r"^(Approve|Reject|Release page):[ \t]+(\S+)\r?$", re.MULTILINE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Inbox:
    """An aiosmtpd handler keeping every message; `refuse` answers DATA with a temporary error."""

    def __init__(self):
        self.messages: list[EmailMessage] = []
        self.envelopes: list = []
        self.refuse = 0  # how many DATA commands to refuse with 451 before accepting
        self.logins: list[str] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            if self.refuse > 0:
                self.refuse -= 1
                return "451 4.3.0 Try again later"
            self.envelopes.append(envelope)
            self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in m["To"]]


class SmtpServer:
    def __init__(self, **smtp_options):
        self.inbox = Inbox()
        self.port = free_port()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port, **smtp_options)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *_):
        self.controller.stop()

    @property
    def messages(self) -> list[EmailMessage]:
        return self.inbox.messages


class PasswordCheck:
    """aiosmtpd authenticator accepting one username and password."""

    def __init__(self, username: str, password: str, seen: list[str]):
        self.username, self.password, self.seen = username, password, seen

    def __call__(self, server, session, envelope, mechanism, auth_data):
        login = auth_data.login.decode() if isinstance(auth_data.login, bytes) else auth_data.login
        password = auth_data.password.decode() if isinstance(auth_data.password, bytes) else auth_data.password
        self.seen.append(login)
        ok = login == self.username and password == self.password
        return AuthResult(success=ok, handled=False)  # not handled: the server answers 535 itself


def text_part(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def html_part(message: EmailMessage) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


def links(message: EmailMessage) -> dict[str, str]:
    """{"Approve": url, "Reject": url, "Release page": url} from the plain-text part."""
    return dict(LINK.findall(text_part(message)))


def path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def snapshot(app) -> dict:
    """Everything a link could change: release states, decisions, audit rows, link use."""
    from webapp.extensions import db
    from webapp.models import AuditEvent, Decision, EmailLink, Release

    with app.app_context():
        return {
            "releases": db.session.execute(sa.select(Release.id, Release.state).order_by(Release.id)).all(),
            "decisions": db.session.execute(sa.select(Decision.id, Decision.decision)).all(),
            "audit": db.session.scalar(sa.select(sa.func.count(AuditEvent.id))),
            "links": db.session.execute(sa.select(EmailLink.id, EmailLink.used_at, EmailLink.revoked_at)
                                        .order_by(EmailLink.id)).all(),
        }
