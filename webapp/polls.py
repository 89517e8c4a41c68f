"""Live polls that find nothing changed, answered before Flask.

A signed-in page polls its fragment every few seconds with `?v=<version>`; when `v` is still
the live version the answer is an empty 204. Going through Flask for that (request context,
session, flask-login's user query, after-request hooks) cost ~7 times a minimal Flask view, so
this middleware answers it from Redis, the signed session cookie and one indexed lookup of an
active user. Anything else (no session, a bearer header, another user agent, a stale `v`, Redis
down) passes through to the views, which answer exactly as before.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs

import sqlalchemy as sa
from flask import Flask
from itsdangerous import BadSignature
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_cookie

from .extensions import db, login_manager
from .live import RENDERED_PREFIX, SHARED_RENDER, VERSION_KEY, rendered
from .security import CONTENT_SECURITY_POLICY

LIVE_ENDPOINTS = frozenset({"pages.dashboard_fragment", "pages.environment_fragment"})
NOTHING_CHANGED = [("Cache-Control", "no-store"), ("Vary", "Cookie, HX-Request")]
FRAGMENT_HEADERS = [("Content-Type", "text/html; charset=utf-8"), ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
                    ("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                    ("Referrer-Policy", "same-origin"), *NOTHING_CHANGED]
ACTIVE_FOR_SECONDS = 10
_ACTIVE_USER = sa.text("SELECT 1 FROM users WHERE login_id = :login_id AND active")


class UnchangedPolls:
    def __init__(self, app: Flask, wsgi_app: Callable) -> None:
        self.app, self.wsgi_app = app, wsgi_app
        self.serializer = app.session_interface.get_signing_serializer(app)
        self.max_age = int(app.permanent_session_lifetime.total_seconds())
        self.cookie_name = app.config["SESSION_COOKIE_NAME"]
        with app.app_context():
            self.engine = db.engine
        self.redis: Redis | None = None  # made in the serving process, after any fork
        # Users found active at a version, for a few seconds: every change that could deactivate
        # someone through the app is audited and so moves the version, which empties this; the
        # expiry bounds what a change made straight in the database misses. Steady polls then
        # need almost no SQL.
        self.active_at: tuple[str, float, set[str]] = ("", 0.0, set())

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        answer = self._answer(environ) if environ.get("REQUEST_METHOD") == "GET" else None
        if answer is None:
            return self.wsgi_app(environ, start_response)
        if answer == "":
            start_response("204 No Content", NOTHING_CHANGED)
            return []
        body = answer.encode()
        start_response("200 OK", [*FRAGMENT_HEADERS, ("Content-Length", str(len(body)))])
        return [body]

    def _answer(self, environ: dict) -> str | None:
        """"" for nothing changed, a fragment another viewer's request rendered at the current
        version, or None: let Flask answer."""
        if not environ.get("PATH_INFO", "").startswith("/fragments/"):
            return None
        if environ.get("HTTP_AUTHORIZATION"):
            return None  # a bearer token, not the session, says who asks (auth.py): Flask judges it
        try:
            endpoint, _ = self.app.url_map.bind_to_environ(environ).match(method="GET")
        except HTTPException:
            return None
        if endpoint not in LIVE_ENDPOINTS:
            return None
        try:
            if self.redis is None:
                self.redis = Redis.from_url(self.app.config["REDIS_URL"], socket_timeout=5, socket_connect_timeout=2)
            current, stored = self.redis.mget(VERSION_KEY, RENDERED_PREFIX + SHARED_RENDER)
        except (RedisError, ValueError):
            return None
        if current is None:
            return None
        version = current.decode()
        wanted = parse_qs(environ.get("QUERY_STRING", "")).get("v")
        if wanted and wanted[-1] == version:
            answer = ""
        else:
            answer = rendered(SHARED_RENDER, version, stored) if endpoint == SHARED_RENDER else None
        return answer if answer is not None and self._signed_in(environ, version) else None

    def _signed_in(self, environ: dict, version: str) -> bool:
        """The session cookie is ours, names a user, belongs to this client, and the user is active."""
        cookie = parse_cookie(environ).get(self.cookie_name)
        if not cookie or self.serializer is None:
            return False
        try:
            session = self.serializer.loads(cookie, max_age=self.max_age)
        except BadSignature:
            return False
        login_id = session.get("_user_id")
        if not login_id:
            return False
        if login_manager.session_protection and session.get("_id") != session_identifier(environ):
            return False  # flask-login would end this session: let it
        known_version, expires, active_ids = self.active_at
        if known_version != version or time.monotonic() > expires:
            active_ids = set()
            self.active_at = (version, time.monotonic() + ACTIVE_FOR_SECONDS, active_ids)
        if login_id in active_ids:
            return True
        try:
            with self.engine.connect() as connection:
                active = connection.execute(_ACTIVE_USER, {"login_id": login_id}).first() is not None
        except SQLAlchemyError:
            return False  # Flask answers, with the database error page if it is down
        if active:
            active_ids.add(login_id)
        return active


def session_identifier(environ: dict) -> str:
    """flask-login's session identifier (`utils._create_identifier`) for this request."""
    address = environ.get("HTTP_X_FORWARDED_FOR", environ.get("REMOTE_ADDR"))
    if address is not None:
        address = address.encode("utf-8").split(b",")[0].strip()
    user_agent = environ.get("HTTP_USER_AGENT")
    if user_agent is not None:
        user_agent = user_agent.encode("utf-8")
    return hashlib.sha512(f"{address}|{user_agent}".encode()).hexdigest()
