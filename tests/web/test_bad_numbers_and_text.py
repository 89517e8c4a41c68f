"""Input the database cannot take is refused with a sentence, never a 500 (issue 10, item 10):
ids beyond what the id columns hold (32 bits on PostgreSQL, 64 on SQLite) in paths (404),
queries (400) and forms (422), and text with a NUL character or an unpaired surrogate
anywhere (422), with nothing written."""
from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from werkzeug.routing import IntegerConverter

from tests.helpers import trigger
from webapp.extensions import db
from webapp.models import Grant, WebhookEndpoint

WAITS = {"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"}
TOO_BIG = [str(2**31), str(2**63), "99999999999999999999999", "9" * 5000]
PATH_VALUES = {"project": "svc", "environment": "env", "name": "REGION", "token": "x" * 43, "group": "dba"}


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


# -- text the database cannot store -------------------------------------------------------------------

SURROGATE, NUL = "\\ud800", "\\u0000"  # as a JSON body spells them


def row_counts(app) -> tuple[int, ...]:
    from webapp.models import AuditEvent, Decision, Environment, Project, Release, Variable

    with app.app_context():
        return tuple(db.session.scalar(sa.select(sa.func.count()).select_from(model))
                     for model in (Project, Environment, Variable, Release, Decision, AuditEvent))


@pytest.mark.parametrize("bad", [SURROGATE, NUL, "\\udfff", "ok\\ud83d"])
@pytest.mark.parametrize(("method", "url", "body"), [
    ("post", "/api/v1/projects", '{"name": "shop", "repo": "/srv/%s"}'),
    ("post", "/api/v1/projects", '{"name": "shop", "repo": "/srv/x", "branch": "%s"}'),
    ("post", "/api/v1/projects/svc/environments", '{"name": "prod", "release_stream": "P%s"}'),
    ("patch", "/api/v1/projects/svc/environments/env", '{"release_command": "echo %s"}'),
    ("put", "/api/v1/projects/svc/environments/env/variables/REGION", '{"value": "eu-%s"}'),
    ("post", "/api/v1/projects/svc/environments/env/releases", '{"resources": [], "description": "%s"}'),
    ("post", "/api/v1/projects/svc/environments/env/releases",
     '{"resources": [{"resourceType": "s", "resourceName": "a", "resourcePath": "a", "changeType": "CREATE", '
     '"note": {"%s": 1}}]}'),
    ("post", "/api/v1/releases/{id}/reject", '{"comment": "no %s"}'),
    ("post", "/api/v1/releases/{id}/finish", '{"result": "FAILED", "log": "%s"}'),
])
def test_unstorable_text_in_any_api_body_is_a_422_with_a_sentence_and_writes_nothing(
        app, api, new_environment, run_jobs, method, url, body, bad):
    new_environment(WAITS)
    release_id = trigger(api)
    run_jobs()  # pending approval: reject and finish reach their checks
    before = row_counts(app)
    response = getattr(api("admin"), method)(url.format(id=release_id), data=body % bad,
                                             content_type="application/json")
    assert response.status_code == 422, response.json
    assert ("NUL character" if bad == NUL else "unpaired surrogate") in response.json["error"]
    assert response.json["error"].endswith("remove it.")
    assert row_counts(app) == before


def test_unstorable_text_in_forms_queries_paths_and_headers_is_refused(app, api, web, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = trigger(api)
    run_jobs()
    browser = web("admin")
    before = row_counts(app)
    comment = browser.post(f"/releases/{release_id}/reject", data={"csrf_token": browser.csrf, "comment": "a\x00b"})
    assert comment.status_code == 422 and "NUL character" in comment.text
    sign_in = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', sign_in.get("/sign-in").text).group(1)
    response = sign_in.post("/sign-in", data={"csrf_token": token, "username": "ad\x00min", "password": "x"})
    assert response.status_code == 422 and "username" in response.text
    assert api("member").get("/api/v1/projects/svc/environments/env/releases?state=%00").status_code == 422
    assert api("member").get("/api/v1/projects/s%00vc/environments").status_code == 404
    assert browser.get("/projects/svc/environments/e%00nv").status_code == 404
    keyed = api("dev").post("/api/v1/projects/svc/environments/env/releases", json={"resources": []},
                            headers={"Idempotency-Key": "key\x00"})
    assert keyed.status_code == 422 and "Idempotency-Key" in keyed.json["error"]
    assert row_counts(app) == before


def test_the_field_checks_refuse_unstorable_text_without_a_request_too():
    from webapp.intake.resources import InvalidInput
    from webapp.intake.validate import ENVIRONMENT_FIELDS, PROJECT_FIELDS, VARIABLE_FIELDS

    for check, name in ((PROJECT_FIELDS["repo"], "repo"), (VARIABLE_FIELDS["value"], "value"),
                        (ENVIRONMENT_FIELDS["release_stream"], "release_stream")):
        for bad in ("\ud800", "a\x00"):
            with pytest.raises(InvalidInput) as refused:
                check(bad, name)
            assert refused.value.status == 422 and name in refused.value.message


@pytest.mark.parametrize("bad", ["PROD\nBcc: someone@example.com", "PROD\rX", "PRO\tD", "PROD\u2028X"])
def test_a_release_stream_of_more_than_one_line_is_refused_with_a_sentence_and_changes_nothing(
        app, api, new_environment, bad):
    """It goes into every approval mail's subject: a line break there broke the mail's headers."""
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 0\n"})
    before = row_counts(app)
    refused = api("admin").patch("/api/v1/projects/svc/environments/env", json={"release_stream": bad})
    assert refused.status_code == 422
    assert refused.json["error"] == ("release_stream must be one line of text, without line breaks, tabs or other "
                                     "control characters.")
    assert row_counts(app) == before
    assert api("member").get("/api/v1/projects/svc/environments/env").json["release_stream"] == "QA"
