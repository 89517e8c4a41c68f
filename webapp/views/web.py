"""Shared pieces of the server-rendered pages: HTMX-aware rendering and error answers."""
from __future__ import annotations

from datetime import datetime

from flask import Response, make_response, render_template, request
from markupsafe import Markup, escape

from ..models import STATES


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


# The two small pieces every release line draws, as Python: as Jinja macros they were most of the
# dashboard fragment's rendering time (three macro calls per line). Same markup as _macros.html.
_BADGES = {state: Markup(f'<span class="state state-{state}">{state.replace("_", " ").capitalize()}</span>')
           for state in STATES}
_NO_MOMENT = Markup('<span class="muted">\u2014</span>')


def state_badge(state: str) -> Markup:
    badge = _BADGES.get(state)
    if badge is None:
        label = escape(state.replace("_", " ").capitalize())
        badge = Markup(f'<span class="state state-{escape(state)}">{label}</span>')
    return badge


def when(moment: datetime | None) -> Markup:
    if not moment:
        return _NO_MOMENT
    return Markup(f'<time datetime="{moment:%Y-%m-%dT%H:%M:%SZ}">{moment:%Y-%m-%d %H:%M} UTC</time>')


_BOT = Markup('<span class="kind-bot" title="Created by an approval: applies the approved changes">BOT</span>')


def release_line(release, moment_label: str, moment: datetime | None) -> Markup:
    """One release in a dashboard or environment list: link, BOT mark, state, who and when.

    `release` is a row or a Release with id, kind, state and triggered_by_name.
    """
    who = release.triggered_by_name or "a removed user"
    bot = _BOT if release.kind == "BOT" else ""
    return Markup(f'<a href="/releases/{release.id}">Release {release.id}</a> {bot} {state_badge(release.state)} '
                  f'<span class="muted small">by {escape(who)} · {moment_label} {when(moment)}</span>')
