"""The trigger form: what it offers, what it refuses beside the field, plans and lists."""
from __future__ import annotations

import html
import io
import json
import re

import sqlalchemy as sa

from tests.helpers import CHANGE, release
from tests.web.release_page_support import MIXED, WAITS, release_count
from webapp.extensions import db
from webapp.models import Environment

# -- the trigger form -------------------------------------------------------------------------------------

def test_the_trigger_form_offers_the_environments_the_user_may_trigger_on(app, web, new_environment, people):
    new_environment(WAITS)
    new_environment(WAITS, name="other")
    with app.app_context():
        other = db.session.scalar(sa.select(Environment).where(Environment.name == "other"))
        people.add("scoped", "trigger_release", environment=other)
    page = web("dev").get("/trigger").text
    assert 'enctype="multipart/form-data"' in page and 'type="file" name="plan"' in page
    assert re.findall(r'<option value="([^"]+)"', page) == ["svc/env", "svc/other"]
    assert re.findall(r'<option value="([^"]+)"', web("scoped").get("/trigger").text) == ["svc/other"]
    chosen = web("dev").get("/trigger?environment=svc/other").text
    assert '<option value="svc/other" selected>' in chosen


def test_triggering_from_the_form_redirects_to_the_new_release(app, api, web, new_environment):
    new_environment(WAITS)
    client = web("dev")
    key = re.search(r'name="idempotency_key" value="([^"]+)"', client.get("/trigger").text).group(1)
    form = {"csrf_token": client.csrf, "environment": "svc/env", "resources": json.dumps(MIXED), "ref": "main",
            "description": "from the form", "idempotency_key": key}
    response = client.post("/trigger", data=form)
    assert response.status_code == 303
    release_id = int(response.location.rsplit("/", 1)[1])
    made = release(api, release_id)
    assert made["resources"] == MIXED and made["ref"] == "main" and made["description"] == "from the form"
    assert made["triggered_by"] == "dev"
    assert "was triggered on svc/env" in client.get(response.location).text
    again = client.post("/trigger", data=form)  # a double submit returns the same release
    assert again.location == response.location and release_count(app) == 1
    assert "This form was already sent" in client.get(again.location).text


def test_bad_json_is_explained_beside_the_field_and_nothing_is_written(app, web, new_environment):
    new_environment(WAITS)
    client = web("dev")
    typed = '[{"resourceType": "service",'
    response = client.post("/trigger", data={"csrf_token": client.csrf, "environment": "svc/env",
                                             "resources": typed, "description": "kept"})
    assert response.status_code == 400
    error = re.search(r'<span class="field-error" id="resources-error">([^<]+)</span>', response.text).group(1)
    assert "not valid JSON" in error and "line 1" in error
    assert ">[{&#34;resourceType&#34;: &#34;service&#34;,</textarea>" in response.text  # what was typed stays
    assert ">kept</textarea>" in response.text and '<option value="svc/env" selected>' in response.text
    assert release_count(app) == 0


def test_an_invalid_change_type_gets_the_apis_sentence_beside_the_field(app, web, new_environment):
    new_environment(WAITS)
    client = web("dev")
    wrong = [{**MIXED[0], "changeType": "EXPLODE"}]
    response = client.post("/trigger", data={"csrf_token": client.csrf, "environment": "svc/env",
                                             "resources": json.dumps(wrong)})
    assert response.status_code == 422
    assert 'resources[0].changeType &#34;EXPLODE&#34; is not a change type' in response.text
    bad_ref = client.post("/trigger", data={"csrf_token": client.csrf, "environment": "svc/env",
                                            "resources": "[]", "ref": "-x"})
    assert bad_ref.status_code == 422 and 'id="ref-error"' in bad_ref.text and "must not start with" in bad_ref.text
    empty = client.post("/trigger", data={"csrf_token": client.csrf, "environment": "svc/env"})
    assert empty.status_code == 400 and "Paste the resources JSON" in empty.text
    deep = client.post("/trigger", data={"csrf_token": client.csrf, "environment": "svc/env",
                                         "resources": "[" * 100_000 + "]" * 100_000})
    assert deep.status_code == 400 and "nests too deeply" in deep.text
    assert release_count(app) == 0


def test_a_terraform_plan_file_upload_triggers_its_changes(api, web, new_environment):
    new_environment(WAITS)
    plan = {"format_version": "1.2", "resource_changes": [
        {"address": "aws_s3_bucket.logs", "type": "aws_s3_bucket", "name": "logs", "change": {"actions": ["create"]}},
        {"address": "aws_db_instance.main", "type": "aws_db_instance", "name": "main",
         "change": {"actions": ["delete", "create"]}, "action_reason": "replace_because_cannot_update"},
        {"address": "data.aws_ami.base", "type": "aws_ami", "name": "base", "change": {"actions": ["read"]}},
    ]}
    client = web("dev")
    response = client.post("/trigger", content_type="multipart/form-data", data={
        "csrf_token": client.csrf, "environment": "svc/env", "resources": "",
        "plan": (io.BytesIO(json.dumps(plan).encode()), "plan.json")})
    assert response.status_code == 303
    made = release(api, int(response.location.rsplit("/", 1)[1]))
    assert [(r["resourcePath"], r["changeType"]) for r in made["resources"]] == [
        ("aws_s3_bucket.logs", "CREATE"), ("aws_db_instance.main", "RECREATE")]
    page = client.get(response.location).text
    assert "RECREATE" in page and "replace_because_cannot_update" in page

    broken = client.post("/trigger", content_type="multipart/form-data", data={
        "csrf_token": client.csrf, "environment": "svc/env",
        "plan": (io.BytesIO(b'{"values": {}}'), "state.json")})
    assert broken.status_code == 400 and 'id="plan-error"' in broken.text
    assert "send the output of `terraform show -json &lt;planfile&gt;`" in broken.text
    assert "The uploaded plan has neither" in broken.text and "terraform_plan" not in broken.text


def test_a_plan_that_changes_nothing_is_triggered_only_once_confirmed(app, api, web, new_environment):
    """A plan without resource_changes (or a pasted []) would run the deploy for nothing: the
    form says so and asks first; confirmed, it triggers (the pasted [] stands in for the file)."""
    new_environment(WAITS)
    client = web("dev")
    for data in ({"plan": (io.BytesIO(b'{"format_version": "1.2"}'), "plan.json"), "resources": ""},
                 {"resources": "[]"}):
        asked = client.post("/trigger", content_type="multipart/form-data",
                            data={"csrf_token": client.csrf, "environment": "svc/env", **data})
        assert asked.status_code == 422 and "it changes no resources" in asked.text
        assert 'name="confirm_empty"' in asked.text and ">[]</textarea>" in asked.text
        assert release_count(app) == 0
    confirmed = client.post("/trigger", data={"csrf_token": client.csrf, "environment": "svc/env",
                                              "resources": "[]", "confirm_empty": "1"})
    assert confirmed.status_code == 303
    assert release(api, int(confirmed.location.rsplit("/", 1)[1]))["resources"] == []


UNCHANGED_PLAN = {"format_version": "1.2", "resource_changes": [
    {"address": "aws_s3_bucket.logs", "type": "aws_s3_bucket", "name": "logs", "change": {"actions": ["no-op"]}}]}


def test_a_plan_of_only_no_op_changes_is_triggered_only_once_confirmed_keeping_its_resources(app, api, web,
                                                                                             new_environment):
    """Terraform lists every resource of a plan without changes as a no-op: that plan changes
    nothing too. The confirmation carries its resources as a list, so the file need not be chosen again."""
    new_environment(WAITS)
    client = web("dev")
    asked = client.post("/trigger", content_type="multipart/form-data", data={
        "csrf_token": client.csrf, "environment": "svc/env", "resources": "",
        "plan": (io.BytesIO(json.dumps(UNCHANGED_PLAN).encode()), "plan.json")})
    assert asked.status_code == 422 and "it changes no resources" in asked.text
    assert release_count(app) == 0
    kept = re.search(r'<textarea[^>]*name="resources"[^>]*>(.*?)</textarea>', asked.text, re.S).group(1)
    confirmed = client.post("/trigger", data={"csrf_token": client.csrf, "environment": "svc/env",
                                              "resources": html.unescape(kept), "confirm_empty": "1"})
    assert confirmed.status_code == 303
    made = release(api, int(confirmed.location.rsplit("/", 1)[1]))
    assert [(r["resourcePath"], r["changeType"]) for r in made["resources"]] == [("aws_s3_bucket.logs",
                                                                                  "NO_OPERATION")]


def test_the_api_accepts_a_release_that_changes_nothing_with_a_warning(api, new_environment):
    new_environment(WAITS)
    empty = api("dev").post("/api/v1/projects/svc/environments/env/releases",
                            json={"terraform_plan": {"format_version": "1.2"}})
    assert empty.status_code == 202 and empty.json["resources"] == []
    assert empty.json["warnings"] == ["The release changes no resources (the plan lists none, or only no-op "
                                      "changes, or the list is empty), yet its release command runs all the same."]
    unchanged = api("dev").post("/api/v1/projects/svc/environments/env/releases",
                                json={"terraform_plan": UNCHANGED_PLAN})
    assert unchanged.status_code == 202 and unchanged.json["warnings"] == empty.json["warnings"]
    some = api("dev").post("/api/v1/projects/svc/environments/env/releases", json={"resources": CHANGE})
    assert some.status_code == 202 and some.json["warnings"] == []


def test_an_uploaded_plan_with_errored_as_a_string_is_refused_beside_the_plan_field(app, web, new_environment):
    from webapp.extensions import db
    from webapp.models import Release

    new_environment(WAITS)
    client = web("dev")
    plan = {"format_version": "1.2", "errored": "yes", "resource_changes": []}
    response = client.post("/trigger", content_type="multipart/form-data", data={
        "csrf_token": client.csrf, "environment": "svc/env", "resources": "",
        "plan": (io.BytesIO(json.dumps(plan).encode()), "plan.json")})
    assert response.status_code == 422 and 'id="plan-error"' in response.text
    assert "The Terraform plan&#39;s &#34;errored&#34; must be true or false" in response.text
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Release.id))) == 0


def test_a_member_without_trigger_release_gets_no_form_and_a_403_on_post(app, web, new_environment):
    new_environment(WAITS)
    client = web("member")
    page = client.get("/trigger")
    assert page.status_code == 200 and "<form method=\"post\" action=\"/trigger\"" not in page.text
    assert "ask an admin for a grant" in page.text
    response = client.post("/trigger", data={"csrf_token": client.csrf, "environment": "svc/env",
                                             "resources": json.dumps(MIXED)})
    assert response.status_code == 403 and "Trigger release" in response.text
    assert release_count(app) == 0


def test_an_unknown_environment_in_the_trigger_form_is_a_404(app, web, new_environment):
    new_environment(WAITS)
    client = web("dev")
    response = client.post("/trigger", data={"csrf_token": client.csrf, "environment": "svc/nope",
                                             "resources": "[]"})
    assert response.status_code == 404 and "choose one from the list" in response.text
    assert release_count(app) == 0


def test_an_anonymous_visitor_cannot_see_or_use_the_trigger_form_or_inbox(app, new_environment):
    new_environment(WAITS)
    client = app.test_client()
    for url in ("/trigger", "/approvals"):
        response = client.get(url)
        assert response.status_code == 302 and response.location.startswith("/sign-in?next=")
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/sign-in").text).group(1)
    response = client.post("/trigger", data={"csrf_token": token, "environment": "svc/env", "resources": "[]"})
    assert response.status_code == 302 and response.location.startswith("/sign-in")
    assert release_count(app) == 0
