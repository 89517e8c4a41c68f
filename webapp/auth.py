"""Who is asking: sessions (flask-login), bearer API tokens, passwords and CSRF."""
from __future__ import annotations

import functools
import hashlib
import logging
import secrets
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask, Response, current_app, has_app_context, jsonify, make_response, redirect, request, url_for
from flask_login import current_user

from .extensions import csrf, db, login_manager
from .models import ApiToken, User, utcnow
from .running.outage import is_outage

log = logging.getLogger(__name__)

TOKEN_PREFIX = "rg_"
LAST_USED_PRECISION = timedelta(minutes=1)
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Endpoints that check a bearer token of their own, which is no user's API token.
OWN_BEARER_TOKEN = frozenset({"metrics.scrape"})  # METRICS_TOKEN (views/metrics.py)


@functools.cache
def _hasher(time_cost: int, memory_kib: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib)


def _current_hasher() -> PasswordHasher:
    """argon2id with the app's cost (ARGON2_TIME_COST, ARGON2_MEMORY_KIB); tests lower it."""
    config = current_app.config if has_app_context() else {}
    return _hasher(config.get("ARGON2_TIME_COST", 3), config.get("ARGON2_MEMORY_KIB", 65536))


def hash_password(password: str) -> str:
    return _current_hasher().hash(password)


def verify_password(user: User, password: str) -> bool:
    return _verify(user.password_hash, password)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _current_hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _stand_in_hash(time_cost: int, memory_kib: int) -> str:
    """The hash of a random password nobody knows, at the app's cost (made once per process)."""
    return _hasher(time_cost, memory_kib).hash(secrets.token_urlsafe(32))


def authenticate(username: str, password: str) -> User | None:
    """The active user `username` if `password` is theirs, else None.

    Unknown and inactive usernames cost one argon2 verification too, of a stand-in hash at the
    same cost: a refusal that came back faster would tell which usernames exist.
    """
    user = db.session.scalar(sa.select(User).where(User.username == username)) if username else None
    if user is None or not user.active:
        hasher = _current_hasher()
        _verify(_stand_in_hash(hasher.time_cost, hasher.memory_cost), password)
        return None
    return user if verify_password(user, password) else None


def _token_hash(token: str) -> str:
    # Tokens are 256 random bits, so a fast hash is enough; no salt or stretching needed.
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(user: User, name: str = "", expires_at: datetime | None = None) -> str:
    """Store a new API token's hash and return the token itself (shown once)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    db.session.add(ApiToken(user_id=user.id, name=name, token_hash=_token_hash(token), prefix=token[:10],
                            expires_at=expires_at))
    db.session.commit()
    return token


def user_for_token(token: str) -> User | None:
    row = db.session.execute(
        sa.select(ApiToken, User).join(User, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == _token_hash(token), ApiToken.revoked_at.is_(None))).first()
    if row is None:
        return None
    api_token, user = row
    now = utcnow()
    if not user.active or (api_token.expires_at is not None and api_token.expires_at <= now):
        return None
    if api_token.last_used_at is None or now - api_token.last_used_at > LAST_USED_PRECISION:
        _note_use(api_token.id, now)
    return user


def _note_use(token_id: int, now: datetime) -> None:
    """Record when a token was last used, at most once a minute, in a short transaction of
    its own so the request's own transaction stays read-only until it acts."""
    try:
        with db.engine.begin() as connection:
            connection.execute(sa.update(ApiToken).where(ApiToken.id == token_id).values(last_used_at=now))
    except sa.exc.DBAPIError as error:
        if not is_outage(error):
            raise
        # A busy or unreachable database must not turn away a request that only reads.
        log.warning("could not record the use of API token %s: %s", token_id, str(error).splitlines()[0])


def _bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@login_manager.user_loader
def _load_user(login_id: str) -> User | None:
    user = db.session.scalar(sa.select(User).where(User.login_id == login_id))
    return user if user is not None and user.active else None


BAD_TOKEN = "The API token is invalid, expired or revoked."


def _token_refused() -> Response:
    if request.path.startswith("/api/"):
        response = make_response(jsonify(error=BAD_TOKEN), 401)
    else:
        response = make_response(BAD_TOKEN, 401)
        response.mimetype = "text/plain"
    response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return response


def _authenticate() -> Response | None:
    """Before every request: who is asking, and the CSRF check that goes with it.

    A request that carries a bearer token is that token's user or nobody (401): the session
    cookie beside it is never read. Otherwise a signed-in browser could add any bearer header
    to skip the CSRF check and still act through its session. Requests without one are
    session requests, and those that change state need the CSRF token.
    """
    if request.endpoint in OWN_BEARER_TOKEN:
        return None
    token = _bearer_token()
    if token is None:
        if request.method in STATE_CHANGING:
            if request.path.startswith("/api/") and not current_user.is_authenticated:
                return _unauthorized()  # no session to protect: the answer is "sign in", not "CSRF token missing"
            csrf.protect(apply_exemptions=True)  # exempt: Slack's requests, signed instead (views/slack.py)
        return None
    user = user_for_token(token)
    if user is None:
        return _token_refused()
    login_manager._update_request_context_with_user(user)  # current_user, without a session
    return None


@login_manager.unauthorized_handler
def _unauthorized():
    if request.path.startswith("/api/"):
        return jsonify(error="Sign in or send an API token (Authorization: Bearer <token>)."), 401
    if request.headers.get("HX-Request"):
        # A fragment must not become a sign-in page swapped into the layout: send the
        # whole tab to sign in, and back to the page it was on afterwards.
        page = urlsplit(request.headers.get("HX-Current-URL", ""))
        response = make_response("Your session has ended; sign in again.", 401)
        response.headers["HX-Redirect"] = url_for("auth.sign_in", next=page.path or "/")
        return response
    return redirect(url_for("auth.sign_in", next=request.full_path.rstrip("?")))


def init_app(app: Flask) -> None:
    login_manager.session_protection = "strong"
    app.before_request(_authenticate)
