"""A small HTTP client for the API (bearer token) and for signing in once to get a session cookie."""
from __future__ import annotations

import http.client
import json
import re
import urllib.error
import urllib.parse
from http.cookiejar import CookieJar
from urllib.request import HTTPCookieProcessor, Request, build_opener

# flask-login's "strong" session protection ties the session to the client's address and
# User-Agent, so wrk must send the same User-Agent as the client that signed in.
USER_AGENT = "releasegate-bench"


class Api:
    """JSON over one keep-alive-less connection per call (gunicorn sync workers close anyway)."""

    def __init__(self, base_url: str, token: str) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                        "User-Agent": USER_AGENT}

    def call(self, method: str, path: str, body: object = None, expect: int | tuple[int, ...] = 200) -> dict:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            connection.request(method, "/api/v1" + path, body=None if body is None else json.dumps(body),
                               headers=self.headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        if response.status not in ((expect,) if isinstance(expect, int) else expect):
            raise SystemExit(f"{method} {path} answered {response.status}: {data[:500].decode(errors='replace')}")
        return json.loads(data) if data else {}


def sign_in(base_url: str, username: str, password: str) -> str:
    """Sign in through the form, as a browser does; returns the Cookie header for wrk."""
    jar = CookieJar()
    opener = build_opener(HTTPCookieProcessor(jar))
    opener.addheaders = [("User-Agent", USER_AGENT)]
    form = opener.open(f"{base_url}/sign-in", timeout=30).read().decode()
    match = re.search(r'name="csrf_token"\s+value="([^"]+)"', form)
    if match is None:
        raise SystemExit("The sign-in form has no csrf_token field; cannot sign in.")
    body = urllib.parse.urlencode({"username": username, "password": password, "csrf_token": match.group(1)})
    response = opener.open(Request(f"{base_url}/sign-in", data=body.encode(), method="POST"), timeout=30)
    response.read()
    cookies = {cookie.name: cookie.value for cookie in jar}
    if "session" not in cookies or response.url.rstrip("/").endswith("/sign-in"):
        raise SystemExit(f"Signing in as {username} failed (ended at {response.url}).")
    return f"session={cookies['session']}"


def get(base_url: str, path: str, cookie: str = "") -> tuple[int, bytes]:
    """One GET without following redirects: (status, body)."""
    parts = urllib.parse.urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("GET", path, headers={"Cookie": cookie, "User-Agent": USER_AGENT})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def create_webhook(base_url: str, username: str, password: str, *, name: str, url: str, events: list[str]) -> None:
    """Make a webhook endpoint through the admin form, as an administrator does (there is no API for it)."""
    jar = CookieJar()
    opener = build_opener(HTTPCookieProcessor(jar))
    opener.addheaders = [("User-Agent", USER_AGENT)]
    form = opener.open(f"{base_url}/sign-in", timeout=30).read().decode()
    token = re.search(r'name="csrf_token"\s+value="([^"]+)"', form)
    body = urllib.parse.urlencode({"username": username, "password": password, "csrf_token": token.group(1)})
    opener.open(Request(f"{base_url}/sign-in", data=body.encode(), method="POST"), timeout=30).read()
    page = opener.open(f"{base_url}/admin/webhooks", timeout=30).read().decode()
    token = re.search(r'name="csrf_token"\s+value="([^"]+)"', page)
    if token is None:
        raise SystemExit("The webhooks page has no csrf_token field; cannot create a webhook.")
    fields = [("csrf_token", token.group(1)), ("name", name), ("url", url), ("format", "json"), ("scope", "all"),
              ("active", "on"), *(("events", event) for event in events)]
    try:
        response = opener.open(Request(f"{base_url}/admin/webhooks", data=urllib.parse.urlencode(fields).encode(),
                                       method="POST"), timeout=30)
        status, text = response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode(errors="replace")
    if status not in (200, 201) or name not in text:
        raise SystemExit(f"Creating the webhook answered {status}: {text[:1000]}")
