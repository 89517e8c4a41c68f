"""Signing in and out (flask-login), with a `next` that can only point back here."""
from __future__ import annotations

from urllib.parse import unquote, urlsplit

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from .. import accounts
from ..auth import authenticate
from ..extensions import limiter

auth = Blueprint("auth", __name__)


def safe_next(target: str | None) -> str:
    """`target` if it is a path on this site, else the dashboard.

    Refuses `//host`, `/\\host`, `/%09/host` (browsers drop tabs and newlines, and read
    a backslash as a slash), `https:host`, `javascript:` and anything with a scheme or host.
    """
    fallback = url_for("pages.dashboard")
    if not target:
        return fallback
    for form in (target, unquote(target)):  # judge it as sent and as a browser may decode it
        if not form.startswith("/") or form.startswith(("//", "/\\")):
            return fallback
        if any(ord(char) < 0x21 or char == "\\" for char in form):
            return fallback
        parts = urlsplit(form)
        if parts.scheme or parts.netloc:
            return fallback
    return target


TOO_MANY = "Too many sign-in attempts; wait a minute and try again."


def _username_key() -> str:
    return "username:" + request.form.get("username", "").strip().lower()


@auth.route("/sign-in", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_ADDRESS"], methods=["POST"], error_message=TOO_MANY)
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_PER_USERNAME"], methods=["POST"], key_func=_username_key,
               error_message=TOO_MANY)
def sign_in():
    next_url = safe_next(request.values.get("next"))
    if current_user.is_authenticated:
        return redirect(next_url)
    error = None
    username = ""
    if request.method == "POST":
        username = request.form.get("username", "").strip()
        user = authenticate(username, request.form.get("password", ""))
        if user is None:
            error = "That username and password do not match an active account; check them and try again."
        else:
            login_user(user, remember=request.form.get("remember") == "on")
            return redirect(next_url)
    status = 401 if error else 200
    return render_template("sign_in.html", error=error, username=username, next_url=next_url), status


@auth.post("/sign-out")
def sign_out():
    if current_user.is_authenticated:
        # Clearing this browser's cookie is not enough: a copy of it would still work.
        accounts.sign_out(current_user._get_current_object())
    logout_user()
    return redirect(url_for("auth.sign_in"))
