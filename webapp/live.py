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


# Fragments that are the same for every viewer, as last rendered, beside the counter in Redis:
# "<version>\n<html>". Every viewer fetches a fragment once after each change; one render serves
# them all, from any web process. Kept next to the counter, so losing one loses both.
RENDERED_PREFIX = "releasegate:rendered:"
SHARED_RENDER = "pages.dashboard_fragment"  # the one fragment that is the same for every viewer


def remember_render(name: str, version: str, html: str) -> None:
    if version == "none":
        return
    try:
        redis_connection().set(RENDERED_PREFIX + name, f"{version}\n{html}", ex=3600)
    except (RedisError, RuntimeError) as error:
        log.warning("could not keep a rendered fragment: %s", error)


def rendered(name: str, version: str, stored: bytes | None = None) -> str | None:
    """The fragment `name` as rendered at `version`, if it is kept (`stored`: already read)."""
    if stored is None:
        try:
            stored = redis_connection().get(RENDERED_PREFIX + name)
        except (RedisError, RuntimeError):
            return None
    if stored is None:
        return None
    tag, _, html = stored.decode().partition("\n")
    return html if tag == version else None
