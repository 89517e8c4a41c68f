"""Row ids in addresses, queries and forms: whole numbers the id columns can hold.

A larger number reached the database as a value it cannot bind (SQLite: OverflowError beyond
64 bits; PostgreSQL, whose id columns are INTEGER: out of range beyond 31 bits) and answered
500. No row has such an id, so a path naming one is simply not there (404), and a query or
form value naming one is a mistake (400 or 422).
"""
from __future__ import annotations

from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter

# The id columns are INTEGER: 32 bits on PostgreSQL, 64 on SQLite, whose ids count up from 1
# and never get near 2^31 either. One bound for both, so an address means the same on each.
MAX_ID = 2**31 - 1
_MAX_DIGITS = len(str(MAX_ID))


class IdConverter(IntegerConverter):
    """`<int:…>` of every route (create_app installs it under that name): ASCII digits naming
    1 … MAX_ID. Other digits name no row: a 404, whatever the method.

    NotFound rather than werkzeug's ValidationError: after a ValidationError the router goes
    on to the route's other methods and answers a POST with 405 when a GET of the same
    address exists."""

    regex = r"[0-9]+"

    def to_python(self, value: str) -> int:
        # Length first: int() of thousands of digits refuses (ValueError), or takes its time.
        number = int(value) if len(value) <= _MAX_DIGITS else 0
        if not 1 <= number <= MAX_ID:
            shown = value if len(value) <= 30 else value[:29] + "…"
            raise NotFound(f"There is nothing at this address: no record has the number {shown}.")
        return number


def parse_id(text: str | None) -> int | None:
    """The id a query or form value names, or None when it is not one (the caller says so)."""
    text = (text or "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > _MAX_DIGITS:
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ID else None
