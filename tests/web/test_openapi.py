"""The OpenAPI document (webapp/openapi.yaml) is valid OpenAPI 3.1, names every /api/v1 route
and method and no other, is served without signing in, and real answers fit its schemas.
scripts/api_contract.py goes further: schemathesis against a live server."""
from __future__ import annotations

import re

import pytest
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.helpers import trigger
from webapp.views.api import OPENAPI_DOCUMENT, load_openapi

PREFIX = "/api/v1"
DOCUMENT_URI = "urn:releasegate:openapi"
HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
WAITS = {"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"}


@pytest.fixture(scope="module")
def document() -> dict:
    return load_openapi()


def document_operations(document: dict) -> set[tuple[str, str]]:
    return {(method.upper(), f"{PREFIX}{path}") for path, item in document["paths"].items()
            for method in item if method in HTTP_METHODS}


def route_operations(app) -> set[tuple[str, str]]:
    """(METHOD, /api/v1/path/{name}) for every API route, in OpenAPI's way of writing a path."""
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(f"{PREFIX}/"):
            path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
            found.update((method, path) for method in rule.methods - {"HEAD", "OPTIONS"})
    return found


def test_the_document_is_valid_openapi_3_1(document):
    validate(document)
    assert document["openapi"].startswith("3.1.")


class RefusesDuplicateKeys(yaml.SafeLoader):
    """YAML keeps the last of two equal keys without a word: two "400" answers would hide one."""

    def construct_mapping(self, node, deep=False):
        self.flatten_mapping(node)  # `<<: *anchor` merges: what it brings in counts as written here
        keys = [self.construct_object(key, deep=deep) for key, _value in node.value]
        repeated = sorted({str(key) for key in keys if keys.count(key) > 1})
        if repeated:
            raise yaml.constructor.ConstructorError(None, None, f"repeated keys {repeated}", node.start_mark)
        return super().construct_mapping(node, deep=deep)


def test_the_document_names_no_key_twice():
    yaml.load(OPENAPI_DOCUMENT.read_text(encoding="utf-8"), Loader=RefusesDuplicateKeys)  # noqa: S506


def test_the_document_names_every_api_route_and_method_and_no_other(app, document):
    routes, described = route_operations(app), document_operations(document)
    assert sorted(routes - described) == [], "API routes the OpenAPI document does not describe"
    assert sorted(described - routes) == [], "operations in the OpenAPI document that no route serves"


def test_the_document_is_served_as_json_without_signing_in(app, document):
    client = app.test_client()
    response = client.get(f"{PREFIX}/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert response.json == document
    assert client.get(f"{PREFIX}/projects").status_code == 401  # the exemption is this one address


def test_the_states_the_document_names_are_the_models(document):
    from webapp.models import STATES

    assert document["components"]["schemas"]["State"]["enum"] == list(STATES)


# -- real answers against the document's schemas ----------------------------------------------

class Contract:
    """Checks an answer against what the document says its operation answers."""

    def __init__(self, document: dict):
        self.document = document
        self.registry = Registry().with_resource(
            DOCUMENT_URI, Resource.from_contents(document, default_specification=DRAFT202012))

    def check(self, response, method: str, path: str) -> dict | None:
        """Assert that `response` to METHOD `path` (as the document writes it, without /api/v1)
        has a documented status, and that its JSON fits that status's schema; return the JSON."""
        where = ["paths", path, method.lower(), "responses", str(response.status_code)]
        answer = self._at(where)
        assert answer is not None, f"{method} {path} answered {response.status_code}, which is not documented"
        if "$ref" in answer:
            where = answer["$ref"].removeprefix("#/").split("/")
            answer = self._at(where)
        if "content" not in answer:
            assert response.data == b""
            return None
        assert response.mimetype == "application/json"
        # The schema by its place in the document, so the references inside it resolve there too.
        pointer = "/".join(part.replace("~", "~0").replace("/", "~1") for part in
                           [*where, "content", "application/json", "schema"])
        validator = Draft202012Validator({"$ref": f"{DOCUMENT_URI}#/{pointer}"}, registry=self.registry)
        errors = list(validator.iter_errors(response.json))
        assert errors == [], "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)
        return response.json

    def _at(self, parts: list[str]) -> dict | None:
        found = self.document
        for part in parts:
            found = found.get(part) if isinstance(found, dict) else None
        return found


@pytest.fixture()
def contract(document) -> Contract:
    return Contract(document)


def test_a_release_environment_and_project_read_as_the_document_says(api, new_environment, run_jobs, contract):
    new_environment(WAITS, project="svc", name="env", release_stream="PROD")
    release_id = trigger(api, "dev", description="api 1.4")
    run_jobs()  # the hook asks for approval
    pending = contract.check(api("member").get(f"/api/v1/releases/{release_id}"), "GET", "/releases/{release_id}")
    assert pending["state"] == "PENDING_APPROVAL" and pending["approval"]["met"] is False
    approved = contract.check(api("approver").post(f"/api/v1/releases/{release_id}/approve", json={"comment": "ok"}),
                              "POST", "/releases/{release_id}/approve")
    assert approved["state"] == "APPROVED" and approved["decisions"][0]["by"] == "approver"
    environment = contract.check(api("member").get("/api/v1/projects/svc/environments/env"),
                                 "GET", "/projects/{project}/environments/{environment}")
    assert environment["window"] == {"open": True, "reason": None, "until": None}
    assert [item["kind"] for item in environment["active"]] == ["BOT"]
    contract.check(api("member").get("/api/v1/projects/svc/environments/env/releases"),
                   "GET", "/projects/{project}/environments/{environment}/releases")
    contract.check(api("member").get(f"/api/v1/releases/{release_id}/events"), "GET", "/releases/{release_id}/events")
    contract.check(api("member").get("/api/v1/projects?limit=1"), "GET", "/projects")


def test_an_emergency_release_and_its_review_read_as_the_document_says(api, people, new_environment, run_jobs,
                                                                       contract):
    new_environment(WAITS, allow_break_glass=True)
    people.add("medic", "trigger_release", "break_glass")
    response = api("medic").post("/api/v1/projects/svc/environments/env/releases",
                                 json={"resources": [], "break_glass": {"reason": "the shop is down for everyone"}})
    emergency = contract.check(response, "POST", "/projects/{project}/environments/{environment}/releases")
    assert emergency["break_glass"]["review"] is None and emergency["warnings"]
    run_jobs()
    reviewed = contract.check(api("approver").post(f"/api/v1/releases/{emergency['id']}/review",
                                                   json={"comment": "the restart was right"}),
                              "POST", "/releases/{release_id}/review")
    assert reviewed["break_glass"]["review"]["by"] == "approver"


def test_errors_read_as_the_document_says(app, api, new_environment, contract):
    new_environment(WAITS)
    missing = contract.check(api("member").get("/api/v1/projects/nope/environments/env"),
                             "GET", "/projects/{project}/environments/{environment}")
    assert missing["error"]
    contract.check(app.test_client().get("/api/v1/releases/1"), "GET", "/releases/{release_id}")  # 401
    contract.check(api("member").post("/api/v1/projects", json={"name": "x", "repo": "r"}), "POST", "/projects")  # 403
    contract.check(api("admin").post("/api/v1/projects", json={"name": "Not A Slug", "repo": "r"}),
                   "POST", "/projects")  # 422
    contract.check(api("dev").post("/api/v1/projects/svc/environments/env/releases", json={"ref": "main"}),
                   "POST", "/projects/{project}/environments/{environment}/releases")  # 400
    release_id = trigger(api, "dev")
    contract.check(api("admin").post(f"/api/v1/releases/{release_id}/review", json={}),
                   "POST", "/releases/{release_id}/review")  # 409: not an emergency release
    contract.check(api("admin").delete("/api/v1/groups/nobody"), "DELETE", "/groups/{group}")  # 404


def test_creating_a_project_with_change_windows_is_refused_with_a_sentence_not_a_server_error(api, contract):
    """Found by schemathesis: the creation passed change_windows on to a function without them (500)."""
    response = api("admin").post("/api/v1/projects", json={"name": "shop", "repo": "r", "change_windows": []})
    assert "allowed: name, repo, branch, hook_ref, web_url_template" in contract.check(response, "POST", "/projects")[
        "error"]
    assert response.status_code == 400


def test_the_markdown_reference_is_the_document_as_it_is_now():
    """docs/api-reference.md is rendered from webapp/openapi.yaml: after a change to the document,
    run scripts/api_reference.py."""
    from scripts.api_reference import DOCUMENT, REFERENCE, render

    spec = yaml.safe_load(DOCUMENT.read_text())
    assert REFERENCE.read_text() == render(spec), "run: .venv/bin/python scripts/api_reference.py"
    for path, item in spec["paths"].items():
        for method in item.keys() & {"get", "post", "put", "patch", "delete"}:
            assert f"### `{method.upper()} /api/v1{path}`" in REFERENCE.read_text()
