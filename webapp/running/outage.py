"""Riding out a database outage in the worker.

A hook that ran must not run again because the database blinked while its result was
being written. So the worker's bookkeeping (claiming a run, pinning a commit, recording a
result) is retried with backoff until the database answers again, for at most
BOOKKEEPING_RETRY_SECONDS; every such call is a compare-and-set on the release's state, so
a retry after a write that did land changes nothing. Heartbeats are not retried: a missed
one is simply skipped, and the run goes on.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import TypeVar

from flask import current_app
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from ..extensions import db

log = logging.getLogger(__name__)
T = TypeVar("T")


def is_outage(error: BaseException) -> bool:
    """The database could not be reached or was busy, as opposed to a rule it enforced."""
    return isinstance(error, (OperationalError, InterfaceError)) or (
        isinstance(error, DBAPIError) and error.connection_invalidated)


def _reset_session() -> None:
    with contextlib.suppress(DBAPIError):  # the connection is gone; remove() discards it
        db.session.rollback()
    db.session.remove()


def persist(call: Callable[..., T], *args, **kwargs) -> T:
    """`call(*args, **kwargs)`, retried while the database is unavailable."""
    give_up = time.monotonic() + current_app.config["BOOKKEEPING_RETRY_SECONDS"]
    wait = 0.25
    while True:
        try:
            return call(*args, **kwargs)
        except DBAPIError as error:
            if not is_outage(error) or time.monotonic() + wait > give_up:
                raise
            _reset_session()
            log.warning("database unavailable during %s; retrying in %.1f s: %s",
                        getattr(call, "__name__", call), wait, str(error).splitlines()[0])
            time.sleep(wait)
            wait = min(wait * 2, 5.0)


def unless_down(call: Callable[..., T], fallback: T, *args, **kwargs) -> T:
    """`call(...)`, or `fallback` when the database is unavailable (e.g. a heartbeat)."""
    try:
        return call(*args, **kwargs)
    except DBAPIError as error:
        if not is_outage(error):
            raise
        _reset_session()
        log.warning("database unavailable; skipped %s: %s", getattr(call, "__name__", call),
                    str(error).splitlines()[0])
        return fallback
