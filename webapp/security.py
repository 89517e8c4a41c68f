"""Response headers that make the pages safe to serve: a strict CSP and friends."""
from __future__ import annotations

from flask import Flask, Response, request

CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
                           "object-src 'none'")


def _headers(response: Response) -> Response:
    headers = response.headers
    if request.headers.get("HX-Request") or request.path.startswith("/fragments/"):
        response.vary.add("HX-Request")
    if request.endpoint != "static":
        headers.setdefault("Cache-Control", "no-store")
    if response.status_code in (204, 304):
        # No body, so no document for CSP, framing or sniffing rules to guard: a live poll that
        # finds nothing changed is a status line and the caching headers.
        headers.remove("Content-Type")
        return response
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    return response


def init_app(app: Flask) -> None:
    if app.config["BASE_URL"].startswith("https://"):  # served over HTTPS: cookies never leave it
        app.config["SESSION_COOKIE_SECURE"] = app.config["REMEMBER_COOKIE_SECURE"] = True
    app.after_request(_headers)
