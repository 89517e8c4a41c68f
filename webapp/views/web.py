"""Shared pieces of the server-rendered pages: HTMX-aware rendering and error answers."""
from __future__ import annotations

from flask import Response, make_response, render_template, request


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
