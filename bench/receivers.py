"""Figure 3's far ends: a real SMTP server (aiosmtpd) and a real HTTP server for webhooks, both on
127.0.0.1 in threads of the bench, noting the wall-clock moment each message was accepted."""
from __future__ import annotations

import json
import re
import threading
import time
from email import message_from_bytes
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from scripts.run_local import free_port

_RELEASE = re.compile(r"release #(\d+) needs your approval")


class Mailbox:
    """SMTP on 127.0.0.1: each approval request's (release id → moment its DATA was accepted)."""

    def __init__(self, approver_address: str) -> None:
        from aiosmtpd.controller import Controller

        self.approver = approver_address
        self.received: dict[int, float] = {}
        self.count = 0
        self.lock = threading.Lock()
        self.port = free_port(0)
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 -- aiosmtpd's name
        now = time.time()
        message = message_from_bytes(envelope.original_content or envelope.content)
        subject = str(make_header(decode_header(message.get("Subject", ""))))
        match = _RELEASE.search(subject)
        with self.lock:
            self.count += 1
            if match and self.approver in envelope.rcpt_tos:
                self.received.setdefault(int(match.group(1)), now)
        return "250 Message accepted for delivery"

    def stop(self) -> None:
        self.controller.stop()


class WebhookReceiver:
    """HTTP on 127.0.0.1: each release.pending_approval delivery's (release id → moment received)."""

    def __init__(self) -> None:
        self.received: dict[int, float] = {}
        self.count = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 -- http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.time()
                self.send_response(204)
                self.end_headers()
                try:
                    event = json.loads(body)
                except ValueError:
                    return
                with receiver.lock:
                    receiver.count += 1
                    if event.get("event") == "release.pending_approval" and event.get("release"):
                        receiver.received.setdefault(int(event["release"]["id"]), now)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port(0)), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
