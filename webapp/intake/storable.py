"""Text the database can store, checked where every request comes in.

PostgreSQL refuses a NUL character in text, and UTF-8 (so SQLite too) cannot encode an
unpaired surrogate, which json.loads makes out of "\\ud800". Either failed deep inside a
query as a 500. So before any view runs, the path's values, the query, the form fields, the
JSON body and the one stored header are checked once, and no view can forget; the field
checks (resources.check_storable, used by validate.text) say the same to callers without a
request (CLI, tests).
"""
from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Mapping

from flask import Flask, abort, request

from .resources import check_storable, unstorable

STORED_HEADERS = ("Idempotency-Key",)


def one_line(text: object) -> str:
    """`text` on one line: control, format and line- or paragraph-separator characters become
    spaces, runs of space fold into one. For values shown where a line means something (a text
    mail's "Approve:" line, a chat message) that someone else wrote: a resource name, a commit's
    subject or author."""
    cleaned = "".join(" " if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") else char
                      for char in str(text or ""))
    return " ".join(cleaned.split())


def _json_strings(value: object) -> Iterator[tuple[str, str]]:
    """(text, where) for every string and object key in a JSON value, without recursion."""
    stack: list[tuple[object, str]] = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            yield item, where
        elif isinstance(item, Mapping):
            for key, child in item.items():
                yield key, where or "the request body"
                stack.append((child, f"{where}.{key}" if where else key))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{index}]") for index, child in enumerate(item))


def _json_body() -> object:
    if not (request.path.startswith("/api/") or request.is_json) or not request.get_data(cache=True):
        return None
    try:
        return request.get_json(force=True, silent=True)  # cached: the view reads it from there
    except RecursionError:
        return None  # the view says the body nests too deeply


def check_request() -> None:
    """Before every request: 404 for a path naming something no row can be called, 422 with
    a sentence for unstorable text in the query, a form field, the JSON body or a stored header."""
    if any(isinstance(value, str) and unstorable(value) for value in (request.view_args or {}).values()):
        abort(404)
    for source, values in (("query parameter", request.args), ("form field", request.form)):
        for key, value in values.items(multi=True):
            check_storable(key, f"The name of a {source}")
            check_storable(value, f'The {source} "{key}"')
    for text, where in _json_strings(_json_body()):
        check_storable(text, f'The field "{where}"' if where else "The request body")
    for header in STORED_HEADERS:
        check_storable(request.headers.get(header, ""), f"The {header} header")


def init_app(app: Flask) -> None:
    app.before_request(check_request)
