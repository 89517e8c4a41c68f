"""The API never answers 500 to bad input: random JSON at every write endpoint gets a
4xx with a sentence, and a refused request writes nothing."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import trigger
from webapp.extensions import db
from webapp.models import AuditEvent, Decision, Environment, Grant, Group, Project, Release, Variable, group_members

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=50) | \
    st.sampled_from(["", "PROD", "CREATE", "SUCCEEDED", "x" * 5000, "\u202e\u0000\udcff", "../../etc"])
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=12) | st.sampled_from(["resources", "terraform_plan", "name", "repo", "release_stream",
                                            "comment", "result", "log", "value", "secret", "ref",
                                            "parallel_releases", "approval_workflow", "sandbox_paths", "path",
                                            "writable", "description", "permission", "environment",
                                            "approval_rules", "approvals", "group", "authors_may_not_approve",
                                            "web_url_template", "change_windows", "freezes", "days", "start",
                                            "end", "tz", "from", "to", "reason", "break_glass",
                                            "allow_break_glass", "break_glass_review_hours"]),
    inner, max_size=5),
    max_leaves=12)
BODIES = JSON | st.dictionaries(st.sampled_from(["resources", "terraform_plan", "ref", "description"]), JSON,
                                max_size=3) | \
    st.fixed_dictionaries({"permission": st.sampled_from(["approve_release", "manage_users", "nope"])},
                          optional={"environment": st.sampled_from([None, "svc/env", "svc", "svc/nope", ""])}) | \
    st.fixed_dictionaries({"approval_rules": st.lists(st.fixed_dictionaries(
        {"name": st.sampled_from(["dba", "default", "Bad Name", ""]) | SCALARS},
        optional={"group": st.sampled_from([None, "dba", "nobody"]) | SCALARS,
                  "approvals": st.integers(-1, 12) | SCALARS}), max_size=3) | JSON}) | \
    st.fixed_dictionaries({"change_windows": st.lists(st.fixed_dictionaries({
        "days": st.lists(st.sampled_from(["mon", "sun", "Mon", "moon", ""]) | SCALARS, max_size=3) | SCALARS,
        "start": st.sampled_from(["09:00", "24:00", "9:00", "02:30", "00:00"]) | SCALARS,
        "end": st.sampled_from(["16:00", "09:00", "23:59"]) | SCALARS,
        "tz": st.sampled_from(["Europe/Berlin", "UTC", "localtime", "../../etc/passwd", "Factory", ""]) | SCALARS}),
        max_size=3) | JSON}) | \
    st.fixed_dictionaries({"freezes": st.lists(st.fixed_dictionaries({
        "from": st.sampled_from(["2026-12-20T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
                                 "2026-12-20"]) | SCALARS,
        "to": st.sampled_from(["2027-01-04T00:00:00Z", "9999-12-31T23:59:59Z"]) | SCALARS,
        "reason": SCALARS}), max_size=3) | JSON}) | \
    st.fixed_dictionaries({"resources": st.just([]), "break_glass": st.fixed_dictionaries(
        {"reason": st.sampled_from(["", "the site is down for everyone"]) | SCALARS}) | JSON})
TABLES = (Release, Project, Environment, Variable, Decision, AuditEvent, Group, group_members, Grant)
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])


def counts(app) -> tuple[int, ...]:
    with app.app_context():
        return tuple(db.session.scalar(sa.select(sa.func.count()).select_from(t)) for t in TABLES)


@pytest.fixture()
def target(app, api, new_environment):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"})
    assert api("admin").post("/api/v1/groups", json={"name": "dba"}).status_code == 201  # a group to act on
    return trigger(api)  # a queued release to act on


ENDPOINTS = [
    ("post", "/api/v1/projects"),
    ("patch", "/api/v1/projects/svc"),
    ("post", "/api/v1/projects/svc/environments"),
    ("patch", "/api/v1/projects/svc/environments/env"),
    ("put", "/api/v1/projects/svc/environments/env/variables/REGION"),
    ("post", "/api/v1/projects/svc/environments/env/releases"),
    ("post", "/api/v1/releases/{id}/approve"),
    ("post", "/api/v1/releases/{id}/reject"),
    ("post", "/api/v1/releases/{id}/finish"),
    ("post", "/api/v1/releases/{id}/review"),
    ("post", "/api/v1/groups"),
    ("patch", "/api/v1/groups/dba"),
    ("put", "/api/v1/groups/dba/members/dev"),
    ("post", "/api/v1/groups/dba/grants"),
]


def test_every_write_endpoint_of_the_api_is_fuzzed(app):
    """A new write route of the API joins ENDPOINTS (or is listed here as taking no body)."""
    no_body = {"api.delete_variable", "api.cancel", "api.abort_release", "api.delete_group", "api.remove_member",
               "api.revoke_group_grant"}
    fuzzed = {app.url_map.bind("localhost").match(url.format(id=1), method=method.upper())[0]
              for method, url in ENDPOINTS}
    writes = {rule.endpoint for rule in app.url_map.iter_rules()
              if rule.endpoint.startswith("api.") and rule.methods & {"POST", "PUT", "PATCH", "DELETE"}}
    assert sorted(writes - fuzzed - no_body) == []


@pytest.mark.parametrize(("method", "url"), ENDPOINTS)
def test_random_json_never_gets_a_500_and_refusals_write_nothing(app, api, target, method, url):
    url = url.format(id=target)

    @FUZZ
    @given(body=BODIES)
    def check(body):
        before = counts(app)
        response = getattr(api("admin"), method)(url, data=json.dumps(body), content_type="application/json")
        assert response.status_code < 500, (body, response.json)
        if response.status_code >= 400:
            assert isinstance(response.json["error"], str) and response.json["error"].endswith(".")
            assert counts(app) == before, body

    check()


@pytest.mark.parametrize("raw", [b"{", b"\xff\xfe", b"[" * 5000, b'{"resources": [' + b"1," * 100000 + b"1]}"])
def test_malformed_bodies_get_a_400_with_a_sentence(api, target, raw):
    response = api("admin").post("/api/v1/projects/svc/environments/env/releases", data=raw,
                                 content_type="application/json")
    assert 400 <= response.status_code < 500
    assert response.json["error"]
