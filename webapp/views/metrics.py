"""GET /metrics: Prometheus's scrape, behind its own bearer token (METRICS_TOKEN), not a session."""
from __future__ import annotations

import hmac

from flask import Blueprint, Response, abort, current_app, request
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4

from ..metrics import scrape_text

metrics = Blueprint("metrics", __name__)


@metrics.get("/metrics")
def scrape():
    expected = current_app.config["METRICS_TOKEN"]
    if not expected:
        abort(404)  # not switched on: nothing here, as at any other unknown address
    credentials = request.authorization
    offered = credentials.token if credentials is not None and credentials.type == "bearer" else None
    if not offered or not hmac.compare_digest(offered.encode(), expected.encode()):
        response = Response("Send the metrics token (METRICS_TOKEN) as Authorization: Bearer <token>.\n", 401,
                            mimetype="text/plain")
        response.headers["WWW-Authenticate"] = 'Bearer realm="metrics"' + (', error="invalid_token"' if offered else "")
        return response
    return Response(scrape_text(), content_type=CONTENT_TYPE_PLAIN_0_0_4)
