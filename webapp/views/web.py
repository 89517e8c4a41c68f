"""Shared pieces of the server-rendered pages: HTMX-aware answers, the one way a live fragment
answers its poll, and the release lookups the page and API views share."""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from flask import Flask, Response, g, make_response, render_template, request
from flask_login import current_user

from .. import releases
from ..live import current_version
from ..models import Environment, Release, User, utcnow
from ..permissions import may_cancel
from ..transactions import Actor


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true"


def message_response(message: str, status: int, *, kind: str = "error") -> Response:
    """An error a person can read: in place for HTMX (into #messages), a page otherwise."""
    if is_htmx():
        response = make_response(render_template("_message.html", message=message, kind=kind), status)
        response.headers["HX-Retarget"] = "#messages"
        response.headers["HX-Reswap"] = "innerHTML"
        return response
    return make_response(render_template("error.html", message=message, status=status), status)


def relative(moment: datetime, now: datetime, *, precise: bool = False) -> str:
    """How far `moment` is from `now` (both naive UTC) as people say it: "in 14 h", "3 d ago";
    `precise` adds the next unit ("in 2 d 4 h")."""
    seconds = (moment - now).total_seconds()
    if abs(seconds) < 60:
        return "in under a minute" if seconds >= 0 else "under a minute ago"
    amount = span(abs(seconds), precise=precise)
    return f"in {amount}" if seconds >= 0 else f"{amount} ago"


def span(seconds: float, *, precise: bool = False) -> str:
    """A length of time as people say it: "12 min", "14 h", "3 d" (`precise`: "2 d 4 h")."""
    if seconds < 60:
        return "under a minute"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 48 * 3600:
        rest = int(seconds % 3600 // 60)
        return f"{int(seconds // 3600)} h" + (f" {rest} min" if precise and rest else "")
    rest = int(seconds % 86400 // 3600)
    return f"{int(seconds // 86400)} d" + (f" {rest} h" if precise and rest else "")


def ago(moment: datetime, *, precise: bool = False) -> str:
    """`relative` to the moment the page is drawn; static/app.js keeps it fresh on an open page."""
    return relative(moment, utcnow(), precise=precise)


RELEASE_MENTION = re.compile(r"\b((?:[Bb]ot |[Ee]mergency )?[Rr]elease #(\d+))")


def mentions(text: str | None) -> list[tuple[str, int | None]]:
    """`text` in pieces, each "release #N" (bot, emergency) with the id it names, the rest with
    None: the linked() macro in templates/_macros.html links the former."""
    text, pieces, last = text or "", [], 0
    for match in RELEASE_MENTION.finditer(text):
        pieces += [(text[last:match.start()], None), (match.group(1), int(match.group(2)))]
        last = match.end()
    return [*pieces, (text[last:], None)]


def signed_in_user() -> User:
    """The signed-in person as their row (current_user is a proxy to it)."""
    return current_user._get_current_object()


def ui_actor() -> Actor:
    """The signed-in person, acting through the pages (audited "via ui")."""
    return Actor(signed_in_user(), "ui")


def init_app(app: Flask) -> None:
    app.jinja_env.globals["ago"] = ago
    app.jinja_env.globals["mentions"] = mentions


# -- live fragments -------------------------------------------------------------------------------

def live_fragment(render: Callable[[str], str], *, moved: Callable[[], bool] | None = None) -> Response:
    """A live fragment's answer to its poll (STYLE idiom 4).

    The client sends the version it was drawn at as `?v=`. While the counter in Redis still
    reads that (and `moved`, for what the counter does not track, sees nothing move), nothing
    it shows can have changed: an empty 204. Otherwise `render(version)` draws it again, with
    the version read before its rows, so a change made in between shows on the next poll.
    When Redis cannot be read ("none") every poll draws it again.

    Every fragment is drawn for the signed-in user (Cookie), and without a session an HTMX
    request gets HX-Redirect where a plain one is redirected (HX-Request): caches are told it
    varies by both, and security.py forbids storing it at all.
    """
    version = current_version()
    if version != "none" and request.args.get("v") == version and not (moved and moved()):
        response = Response(status=204)
    else:
        response = make_response(render(version))
    response.vary.add("Cookie")
    response.vary.add("HX-Request")
    return response


# -- the release named in the URL, shared by the permission decorator and the views ---------------

def release_in_url(release_id: int, **_) -> Release:
    if "release" not in g:
        g.release = releases.get_release(release_id)
    return g.release


def release_environment(release_id: int, **_) -> Environment:
    return release_in_url(release_id).environment


def own_release(release_id: int, **_) -> bool:
    """Whether the signed-in user triggered the release (and so may cancel or withdraw it)."""
    return may_cancel(release_in_url(release_id), current_user)
