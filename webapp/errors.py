"""Error answers: JSON sentences for the API, never a stack trace."""
from __future__ import annotations

import logging

from flask import Flask, g, jsonify, make_response, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from .extensions import db, login_manager
from .intake.resources import InvalidInput
from .permissions import PermissionDenied
from .releases import ReleaseError
from .running.outage import is_outage
from .views.web import message_response

log = logging.getLogger(__name__)


def _answer(message: str, status: int, **extra):
    """JSON for the API, a readable message (in place for HTMX) for the pages."""
    db.session.rollback()  # whatever the failed action wrote, nothing of it stays
    if request.path.startswith("/api/"):
        return jsonify(error=message, **extra), status
    return message_response(message, status)


def init_app(app: Flask) -> None:
    @app.errorhandler(InvalidInput)
    def invalid_input(error: InvalidInput):
        return _answer(error.message, error.status)

    @app.errorhandler(PermissionDenied)
    def permission_denied(error: PermissionDenied):
        return _answer(str(error), 403)

    @app.errorhandler(ReleaseError)
    def release_error(error: ReleaseError):
        extra = {"field": error.field} if hasattr(error, "field") else {}
        return _answer(str(error), error.status, **extra)

    @app.errorhandler(CSRFError)
    def csrf_error(error: CSRFError):
        return _answer(f"{error.description} Reload the page and try again.", 400)

    @app.errorhandler(DBAPIError)
    def database_error(error: DBAPIError):
        if not is_outage(error):
            return unexpected(error)
        log.error("database unavailable on %s %s: %s", request.method, request.path, str(error).splitlines()[0])
        if "_login_user" not in g:
            g._login_user = login_manager.anonymous_user()  # the page around the message must not ask again
        response = make_response(_answer("The database is unavailable right now; try again in a moment.", 503))
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        messages = {404: "There is nothing at this address.", 405: "This address does not accept that method.",
                    413: "The request is too large."}
        description = error.description if error.description and not error.description.startswith(
            ("The requested URL", "The method is not", "The browser (or proxy)")) else None
        return _answer(description or messages.get(error.code, error.name + "."), error.code)

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _answer("Something went wrong on our side; the error was logged.", 500)
