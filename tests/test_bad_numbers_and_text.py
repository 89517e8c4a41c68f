"""Input the database cannot take is refused with a sentence, never a 500 (issue 10, item 10):
ids beyond what the id columns hold (32 bits on PostgreSQL, 64 on SQLite) in paths (404),
queries (400) and forms (422), and text with a NUL character or an unpaired surrogate
anywhere (422), with nothing written."""
from __future__ import annotations

import pytest
import sqlalchemy as sa
from werkzeug.routing import IntegerConverter

from tests.helpers import trigger
from webapp.extensions import db
from webapp.models import Grant, WebhookEndpoint

WAITS = {"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"}
TOO_BIG = [str(2**31), str(2**63), "99999999999999999999999", "9" * 5000]
PATH_VALUES = {"project": "svc", "environment": "env", "name": "REGION", "token": "x" * 43}


def int_routes(app):
    """(rule, method) for every route with a number in its path."""
    for rule in app.url_map.iter_rules():
        if any(isinstance(converter, IntegerConverter) for converter in rule._converters.values()):
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                yield rule, method


def fill(rule, number: str) -> str:
    url = rule.rule
    for name, converter in rule._converters.items():
        value = number if isinstance(converter, IntegerConverter) else PATH_VALUES[name]
        url = url.replace(f"<{'int:' if isinstance(converter, IntegerConverter) else ''}{name}>", value)
    return url


def test_every_route_with_a_number_in_its_path_answers_404_to_one_no_id_column_holds(app, api, web, new_environment):
    new_environment(WAITS)
    trigger(api)
    browser, token = web("admin"), api("admin")
    routes = list(int_routes(app))
    assert len(routes) > 20  # the walk sees the API, pages, fragments, admin and integrations
    for rule, method in routes:
        for number in TOO_BIG:
            url = fill(rule, number)
            client = token if url.startswith("/api/") else browser
            kwargs = {} if method == "GET" else ({"json": {}} if url.startswith("/api/")
                                                   else {"data": {"csrf_token": browser.csrf}})
            response = getattr(client, method.lower())(url, **kwargs)
            assert response.status_code == 404, (method, url[:80], response.status_code)
    assert token.get(f"/api/v1/releases/{2**31 - 1}").status_code == 404  # the largest id is merely missing


@pytest.mark.parametrize("url", [
    "/api/v1/projects?before={n}",
    "/api/v1/projects/svc/environments/env/releases?before={n}",
    "/api/v1/projects/svc/environments/env/events?before={n}",
    "/api/v1/projects/svc/environments/env/releases?before=0",
])
def test_a_before_no_id_column_holds_in_a_list_query_is_a_400_with_a_sentence(api, new_environment, url):
    new_environment(WAITS)
    for number in TOO_BIG:
        response = api("member").get(url.format(n=number))
        assert response.status_code == 400 and "before" in response.json["error"]


def test_a_before_no_id_column_holds_on_the_environment_page_is_a_400(web, new_environment):
    new_environment(WAITS)
    client = web("member")
    for number in [*TOO_BIG, "0", "-1", "١٢"]:
        response = client.get(f"/projects/svc/environments/env?before={number}")
        assert response.status_code == 400 and "before must be a release number" in response.text


def test_form_ids_no_id_column_holds_are_refused_with_a_sentence(app, web, people, new_environment):
    new_environment(WAITS)
    admin = web("admin")
    with app.app_context():
        count = db.session.scalar(sa.select(sa.func.count(Grant.id)))
    for number in TOO_BIG:
        grant = admin.post(f"/admin/users/{people.add(f'u{len(number)}')}/grants",
                           data={"csrf_token": admin.csrf, "permission": "approve_release", "environment": number})
        assert grant.status_code == 422 and "choose another" in grant.text
        hook = admin.post("/admin/webhooks", data={
            "csrf_token": admin.csrf, "name": "JIRA", "url": "https://jira.example.com/hook", "secret": "",
            "events": ["release.queued"], "format": "json", "scope": "some", "environments": [number]})
        assert hook.status_code == 422 and "Choose environments from the list" in hook.text
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Grant.id))) == count
        assert db.session.scalar(sa.select(sa.func.count(WebhookEndpoint.id))) == 0
