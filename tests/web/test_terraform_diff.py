"""A Terraform plan's attribute diff: kept with its resources, shown folded on the release page,
handed to the hook, and its sensitive values nowhere."""
from __future__ import annotations

import io
import json
import re

import sqlalchemy as sa

from tests.helpers import release, state, wait_for
from tests.web.release_page_support import WAITS
from tests.web.test_openapi import Contract
from webapp.extensions import db
from webapp.models import Release
from webapp.views.api import load_openapi

SECRET = "s3cr3t-hunter2-never-shown"
PLAN = {"format_version": "1.2", "resource_changes": [
    {"address": "aws_db_instance.main", "type": "aws_db_instance", "name": "main",
     "change": {"actions": ["update"],
                "before": {"instance_class": "db.t3.micro", "password": "old-" + SECRET, "tags": {"team": "data"},
                           "engine": "postgres"},
                "after": {"instance_class": "db.t3.large", "password": SECRET,
                          "tags": {"team": "data", "note": "<script>alert(1)</script>"}, "engine": "postgres"},
                "after_unknown": {"endpoint": True},
                "before_sensitive": {"password": True}, "after_sensitive": {"password": True}}},
    {"address": "aws_s3_bucket.logs", "type": "aws_s3_bucket", "name": "logs",
     "change": {"actions": ["create"], "before": None, "after": {"bucket": "logs-" + "x" * 400},
                "after_unknown": {}, "before_sensitive": False, "after_sensitive": True}},
    {"address": "aws_iam_role.ci", "type": "aws_iam_role", "name": "ci",
     "change": {"actions": ["create"], "before": None, "after": {"policy": "p" * 600, "name": "ci"}}},
]}


def upload(client, plan: dict):
    return client.post("/trigger", content_type="multipart/form-data", data={
        "csrf_token": client.csrf, "environment": "svc/env", "resources": "",
        "plan": (io.BytesIO(json.dumps(plan).encode()), "plan.json")})


def stored_resources(app, release_id: int) -> str:
    with app.app_context():
        return json.dumps(db.session.scalar(sa.select(Release.resources).where(Release.id == release_id)))


def diff_of(page: str, address: str) -> str:
    """The attribute diff shown under the resource at `address`."""
    start = page.index(f"<code>{address}</code>")
    return page[start:page.index("</details>", start)]


def test_an_uploaded_plan_shows_each_resources_attribute_diff_folded_and_escaped(app, api, web, new_environment):
    new_environment(WAITS)
    client = web("dev")
    response = upload(client, PLAN)
    assert response.status_code == 303
    release_id = int(response.location.rsplit("/", 1)[1])
    page = client.get(response.location).text

    database = diff_of(page, "aws_db_instance.main")
    assert '<details class="attribute-diff">' in database and "4 attributes change" in database
    assert re.search(r'<code>instance_class</code></td><td><code>&#34;db.t3.micro&#34;</code></td>'
                     r'<td><code>&#34;db.t3.large&#34;</code>', database)
    assert "<code>endpoint</code></td><td><code>null</code></td><td><code>(known after apply)</code>" in database
    assert "<code>password</code></td><td><code>(sensitive value)</code></td><td><code>(sensitive value)</code>" \
        in database
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in database and "<script>alert" not in page
    assert "engine" not in database  # unchanged
    assert "1 attribute changes" in diff_of(page, "aws_s3_bucket.logs")
    role = diff_of(page, "aws_iam_role.ci")
    assert "2 attributes change" in role and "cut short" in role and "p" * 190 + "…" in role

    assert SECRET not in page
    assert SECRET not in json.dumps(release(api, release_id))
    assert SECRET not in stored_resources(app, release_id)
    assert "logs-xxx" not in stored_resources(app, release_id)  # the whole after was marked sensitive


def test_the_api_returns_the_attributes_and_refuses_them_in_a_hand_written_list(api, new_environment):
    new_environment(WAITS)
    response = api("dev").post("/api/v1/projects/svc/environments/env/releases", json={"terraform_plan": PLAN})
    assert response.status_code == 202, response.json
    release_id = response.json["id"]
    contract = Contract(load_openapi())
    read = contract.check(api("member").get(f"/api/v1/releases/{release_id}"), "GET", "/releases/{release_id}")
    database, bucket, role = read["resources"]
    assert database["attributes"][0] == {"name": "endpoint", "before": "null", "after": "(known after apply)"}
    assert "attributes_truncated" not in database
    assert bucket["attributes"] == [{"name": "bucket", "before": "null", "after": "(sensitive value)"}]
    assert role["attributes_truncated"] is True

    again = api("dev").post("/api/v1/projects/svc/environments/env/releases", json={"resources": [database]})
    contract.check(again, "POST", "/projects/{project}/environments/{environment}/releases")
    assert again.status_code == 422
    assert again.json["error"].startswith("resources[0].attributes is filled in from a Terraform plan")


def test_the_hook_reads_the_attributes_in_its_payload_and_never_the_secret(api, new_environment, run_jobs):
    reads = ('python3 -c "import json, sys\n'
             "for r in json.load(open(sys.argv[1]))['resources']:\n"
             "    for a in r.get('attributes', []): print(r['resourcePath'], a['name'], a['before'], a['after'])\n"
             '" "$1"\nexit 2\n')
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": reads})
    response = api("dev").post("/api/v1/projects/svc/environments/env/releases", json={"terraform_plan": PLAN})
    release_id = response.json["id"]
    run_jobs()
    wait_for(lambda: state(api, release_id) == "PENDING_APPROVAL")
    output = release(api, release_id)["hook"]["output"]
    assert 'aws_db_instance.main instance_class "db.t3.micro" "db.t3.large"' in output
    assert "aws_db_instance.main password (sensitive value) (sensitive value)" in output
    assert SECRET not in output


def test_on_a_phone_a_long_attribute_value_wraps_inside_the_screen(api, page_as, new_environment):
    from playwright.sync_api import expect

    new_environment(WAITS)
    long_word = {"format_version": "1.2", "resource_changes": [
        {"address": "aws_iam_policy.ci", "type": "aws_iam_policy", "name": "ci",
         "change": {"actions": ["update"], "before": {"policy": "arn:aws:iam::" + "1" * 150},
                    "after": {"policy": "arn:aws:iam::" + "2" * 150}}}]}
    response = api("dev").post("/api/v1/projects/svc/environments/env/releases", json={"terraform_plan": long_word})
    page = page_as("dev", viewport={"width": 390, "height": 844})
    page.goto(f"/releases/{response.json['id']}")
    summary = page.get_by_text("1 attribute changes")
    expect(summary).to_be_visible()
    cell = page.locator(".attribute-table td", has_text="2222")
    expect(cell).to_be_hidden()  # folded until asked for
    summary.click()
    expect(cell).to_be_visible()
    page.screenshot(path="/tmp/attribute-diff-phone.png", full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    beyond = page.eval_on_selector_all(".attribute-table td", """(cells) => cells
        .filter((cell) => cell.getBoundingClientRect().right > window.innerWidth + 0.5
                          || cell.scrollWidth > cell.clientWidth + 1)
        .map((cell) => cell.textContent.trim())""")
    assert beyond == []


def test_a_resource_past_the_releases_attribute_bound_says_its_changes_were_not_kept(api, web, new_environment):
    from webapp.intake.attributes import MAX_ATTRIBUTES_PER_RELEASE, MAX_ATTRIBUTES_PER_RESOURCE

    new_environment(WAITS)
    full = {"actions": ["create"], "before": None,
            "after": {f"a{index:02}": index for index in range(MAX_ATTRIBUTES_PER_RESOURCE)}}
    count = MAX_ATTRIBUTES_PER_RELEASE // MAX_ATTRIBUTES_PER_RESOURCE + 1
    plan = {"format_version": "1.2", "resource_changes": [
        {"address": f"null_resource.n{index}", "type": "null_resource", "name": f"n{index}", "change": full}
        for index in range(count)]}
    response = api("dev").post("/api/v1/projects/svc/environments/env/releases", json={"terraform_plan": plan})
    assert response.status_code == 202, response.json
    page = web("dev").get(f"/releases/{response.json['id']}").text
    assert page.count("50 attributes change") == count - 1
    last = diff_of(page, f"null_resource.n{count - 1}")
    assert "Attribute changes not kept" in last and "attribute-table" not in last
