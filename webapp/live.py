"""A version counter in Redis that moves whenever anything visible changes, so live
fragments can answer "nothing changed" (204) without touching the database."""
from __future__ import annotations

import logging

from redis.exceptions import RedisError

from .extensions import redis_connection

VERSION_KEY = "releasegate:version"
log = logging.getLogger(__name__)


def bump_version() -> None:
    try:
        redis_connection().incr(VERSION_KEY)
    except (RedisError, RuntimeError) as error:  # pages then simply re-render on the next poll
        log.warning("could not bump the live version: %s", error)


def current_version() -> str:
    """The counter as text; "none" when Redis cannot be read (clients then always re-render)."""
    try:
        value = redis_connection().get(VERSION_KEY)
    except (RedisError, RuntimeError):
        return "none"
    return value.decode() if value else "0"

