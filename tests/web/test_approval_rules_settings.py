"""An environment's approval rules and separation of duties as settings: the API, the settings
form, the CLI; bad rules refused with a sentence and nothing saved; weakening audited and
announced. Also a project's commit web address."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from tests.helpers import release, trigger
from tests.web.pages_support import API_ENV, PAGE, PLAIN, SETTINGS, WAITS, field_error, settings_form
from webapp.extensions import db
from webapp.models import AuditEvent, Group, OutgoingMail

DEFAULT = [{"name": "default", "group": None, "approvals": 1}]
DBA_AND_SRE = [{"name": "dba", "group": "dba", "approvals": 1}, {"name": "sre", "group": "sre", "approvals": 2}]


@pytest.fixture()
def groups(app):
    with app.app_context():
        db.session.add_all([Group(name="dba"), Group(name="sre")])
        db.session.commit()


def last_settings_event(app) -> AuditEvent:
    with app.app_context():
        event = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.action == "settings")
                                  .order_by(AuditEvent.id.desc()))
        db.session.expunge(event)
        return event


def test_rules_are_read_and_written_with_the_settings(app, api, groups, new_environment):
    new_environment(PLAIN)
    assert api("member").get(API_ENV).json["approval_rules"] == DEFAULT
    response = api("admin").patch(API_ENV, json={"approval_rules": DBA_AND_SRE, "authors_may_not_approve": True})
    assert response.status_code == 200, response.json
    saved = api("member").get(API_ENV).json
    assert saved["approval_rules"] == DBA_AND_SRE and saved["authors_may_not_approve"] is True
    assert api("admin").patch(API_ENV, json={"approval_rules": []}).json["approval_rules"] == DEFAULT


def staff_the_groups(api, people) -> None:
    """dba: bob; sre: alice and carol; all three may approve (the personas approver and admin may
    too, but are in neither group)."""
    for name in ("alice", "bob", "carol"):
        people.add(name, "approve_release")
    for group, username in (("dba", "bob"), ("sre", "alice"), ("sre", "carol")):
        assert api("admin").put(f"/api/v1/groups/{group}/members/{username}").status_code == 201


def assert_releases_wait_for_dba_and_two_of_sre(api, run_jobs, path: str) -> None:
    """A release of `path` (rules DBA_AND_SRE) is approved only once bob and both SREs have."""
    release_id = trigger(api, "dev", path=path)
    run_jobs()
    assert release(api, release_id)["state"] == "PENDING_APPROVAL"
    approve = f"/api/v1/releases/{release_id}/approve"
    outside = api("approver").post(approve, json={})
    assert outside.status_code == 409 and "would count for no rule" in outside.json["error"], outside.json
    for who, met in (("bob", {"dba": True, "sre": False}), ("alice", {"dba": True, "sre": False})):
        assert api(who).post(approve, json={}).status_code == 200
        shown = release(api, release_id)
        assert shown["state"] == "PENDING_APPROVAL", (who, shown)
        assert {rule["name"]: rule["met"] for rule in shown["approval"]["rules"]} == met, who
    assert api("carol").post(approve, json={}).status_code == 200
    assert release(api, release_id)["state"] == "APPROVED"


def test_an_environment_created_through_the_api_with_rules_keeps_them_and_its_releases_wait_for_them(
        app, api, people, groups, new_environment, run_jobs):
    new_environment(WAITS)  # the project svc, its hook making every release wait
    staff_the_groups(api, people)
    created = api("admin").post("/api/v1/projects/svc/environments",
                                json={"name": "gated", "release_stream": "QA", "approval_rules": DBA_AND_SRE})
    assert created.status_code == 201, created.json
    assert created.json["approval_rules"] == DBA_AND_SRE
    assert api("member").get("/api/v1/projects/svc/environments/gated").json["approval_rules"] == DBA_AND_SRE
    assert_releases_wait_for_dba_and_two_of_sre(api, run_jobs, "svc/gated")


def test_an_environment_created_through_the_api_with_bad_rules_is_refused_and_not_made(app, api, groups,
                                                                                       new_environment):
    new_environment(PLAIN)
    refused = api("admin").post("/api/v1/projects/svc/environments", json={
        "name": "gated", "release_stream": "QA", "approval_rules": [{"name": "dba", "group": "dbas"}]})
    assert refused.status_code == 422 and "\u201cdbas\u201d, which does not exist" in refused.json["error"]
    assert api("member").get("/api/v1/projects/svc/environments/gated").status_code == 404


@pytest.mark.parametrize("rules, status, message", [
    ("dba", 400, "must be a list of rules"),
    ([{"name": "DBA", "group": "dba", "approvals": 1}], 422, "name must be lowercase"),
    ([{"name": "dba", "group": "dba", "approvals": 0}], 422, "from 1 to 10"),
    ([{"name": "dba", "group": "dba", "approvals": 11}], 422, "from 1 to 10"),
    ([{"name": "dba", "group": "dba", "approvals": "2"}], 422, "from 1 to 10"),
    ([{"name": "dba", "group": "dba", "approvals": True}], 422, "from 1 to 10"),
    ([{"name": "dba", "group": "dba"}, {"name": "dba", "group": "sre"}], 422, "twice"),
    ([{"name": "dba", "group": "dbas", "approvals": 1}], 422, "\u201cdbas\u201d, which does not exist"),
    ([{"name": "dba", "group": "dba", "approvals": 1, "who": "me"}], 422, "unknown field"),
    (["dba"], 422, "must be an object"),
])
def test_bad_rules_are_refused_with_a_sentence_and_nothing_is_saved(app, api, groups, new_environment, rules,
                                                                    status, message):
    new_environment(PLAIN)
    response = api("admin").patch(API_ENV, json={"approval_rules": rules, "release_stream": "OTHER"})
    assert response.status_code == status and message in response.json["error"], response.json
    saved = api("member").get(API_ENV).json
    assert saved["approval_rules"] == DEFAULT and saved["release_stream"] == "QA"


@pytest.mark.parametrize("before, after, weakens", [
    (DBA_AND_SRE, [DBA_AND_SRE[0], {**DBA_AND_SRE[1], "approvals": 3}], False),  # raised
    (DBA_AND_SRE, DBA_AND_SRE + [{"name": "qa", "group": None, "approvals": 1}], False),  # one more rule
    (DBA_AND_SRE, [DBA_AND_SRE[0], {**DBA_AND_SRE[1], "approvals": 1}], True),  # lowered
    (DBA_AND_SRE, [DBA_AND_SRE[0]], True),  # removed
    (DBA_AND_SRE, [DBA_AND_SRE[0], {**DBA_AND_SRE[1], "group": None}], True),  # given to anyone
])
def test_weakening_the_rules_is_audited_and_announced_and_raising_them_is_not(app, api, people, groups,
                                                                              new_environment, run_notify_jobs,
                                                                              before, after, weakens):
    people.add("other-admin", admin=True)  # the admins but the one who changed it are mailed
    new_environment(PLAIN)
    api("admin").patch(API_ENV, json={"approval_rules": before})
    run_notify_jobs()
    assert api("admin").patch(API_ENV, json={"approval_rules": after}).status_code == 200
    event = last_settings_event(app)
    assert event.details["changes"]["approval_rules"] == {"old": before, "new": after}
    assert ("approval_rules" in event.details["weakens_gate"]) is weakens
    run_notify_jobs()
    with app.app_context():
        mails = db.session.scalars(sa.select(OutgoingMail).where(OutgoingMail.audit_event_id == event.id)).all()
    assert bool(mails) is weakens  # the admins hear of a weaker gate, never of a stronger one


def test_turning_separation_of_duties_off_weakens_the_gate_and_on_does_not(app, api, new_environment):
    new_environment(PLAIN)
    api("admin").patch(API_ENV, json={"authors_may_not_approve": True})
    assert last_settings_event(app).details["weakens_gate"] == []
    api("admin").patch(API_ENV, json={"authors_may_not_approve": False})
    assert last_settings_event(app).details["weakens_gate"] == ["authors_may_not_approve"]


def test_the_settings_form_writes_rules_one_a_line_and_shows_them_back(app, api, web, groups, new_environment):
    new_environment(PLAIN)
    client = web("admin")
    form = settings_form(approval_rules="dba dba 1\r\nsre sre 2\r\n\r\n", authors_may_not_approve="on",
                         csrf_token=client.csrf)
    response = client.post(SETTINGS, data=form)
    assert response.status_code == 303, field_error(response.text, "approval_rules")
    saved = api("member").get(API_ENV).json
    assert saved["approval_rules"] == DBA_AND_SRE and saved["authors_may_not_approve"] is True
    page = client.get(PAGE).text
    assert ">dba dba 1\nsre sre 2</textarea>" in page
    assert "Groups: dba, sre." in page
    assert "dba: 1 of group dba" in page  # the settings history, in words
    assert "dba: 1 of group dba" in web("member").get(PAGE).text  # read-only facts
    # `*` is anyone who may approve; an empty box is the default rule.
    client.post(SETTINGS, data=settings_form(approval_rules="two * 2", confirm_weakening="1", csrf_token=client.csrf))
    assert api("member").get(API_ENV).json["approval_rules"] == [{"name": "two", "group": None, "approvals": 2}]
    client.post(SETTINGS, data=settings_form(approval_rules="", confirm_weakening="1", csrf_token=client.csrf))
    assert api("member").get(API_ENV).json["approval_rules"] == DEFAULT


@pytest.mark.parametrize("typed, message", [
    ("dba dba", "write a rule as its name, a group"),
    ("dba dba two", "write a rule as its name, a group"),
    ("dba nobody 1", "\u201cnobody\u201d, which does not exist"),
    ("dba dba 12", "from 1 to 10"),
])
def test_bad_rules_in_the_form_are_refused_beside_the_field_and_kept(app, api, web, groups, new_environment,
                                                                     typed, message):
    new_environment(PLAIN)
    client = web("admin")
    response = client.post(SETTINGS, data=settings_form(approval_rules=typed, release_stream="NEW",
                                                        csrf_token=client.csrf))
    assert response.status_code == 422
    assert message in field_error(response.text, "approval_rules").replace("&#34;", '"')
    assert f">{typed}</textarea>" in response.text
    saved = api("member").get(API_ENV).json
    assert saved["approval_rules"] == DEFAULT and saved["release_stream"] == "QA"


def run(app, *args: str):
    return app.test_cli_runner().invoke(args=list(args))


def test_the_command_line_updates_rules(app, api, groups, new_environment):
    new_environment(PLAIN)
    result = run(app, "environments", "update", "svc/env", "--settings",
                 json.dumps({"approval_rules": DBA_AND_SRE}))
    assert result.exit_code == 0, result.output
    assert "Updated svc/env: approval_rules." in result.output
    assert api("member").get(API_ENV).json["approval_rules"] == DBA_AND_SRE
    bad = run(app, "environments", "update", "svc/env", "--settings",
              '{"approval_rules": [{"name": "x", "group": "y"}]}')
    assert bad.exit_code != 0 and "does not exist" in bad.output
    assert run(app, "environments", "update", "nope/env", "--settings", "{}").exit_code != 0


def test_the_command_line_creates_an_environment_with_rules_that_its_releases_wait_for(app, api, people, groups,
                                                                                       new_environment, run_jobs):
    new_environment(WAITS)
    staff_the_groups(api, people)
    result = run(app, "environments", "create", "svc/gated", "--stream", "QA", "--settings",
                 json.dumps({"approval_rules": DBA_AND_SRE}))
    assert result.exit_code == 0, result.output
    assert api("member").get("/api/v1/projects/svc/environments/gated").json["approval_rules"] == DBA_AND_SRE
    assert_releases_wait_for_dba_and_two_of_sre(api, run_jobs, "svc/gated")
    bad = run(app, "environments", "create", "svc/other", "--stream", "QA", "--settings",
              '{"approval_rules": [{"name": "dba", "group": "dba", "approvals": 0}]}')
    assert bad.exit_code != 0 and "from 1 to 10" in bad.output and "Traceback" not in bad.output
    assert api("member").get("/api/v1/projects/svc/environments/other").status_code == 404


def test_a_project_may_name_where_its_commits_are_shown(app, api, new_environment):
    new_environment(PLAIN)
    template = "https://git.example.com/svc/commit/{sha}"
    created = api("admin").post("/api/v1/projects",
                                json={"name": "web", "repo": "/r", "web_url_template": template})
    assert created.status_code == 201 and created.json["web_url_template"] == template
    for bad in ("https://git.example.com/no-sha", "javascript:alert(1)//{sha}", "ftp://x/{sha}"):
        response = api("admin").post("/api/v1/projects",
                                     json={"name": "bad", "repo": "/r", "web_url_template": bad})
        assert response.status_code == 422 and "{sha}" in response.json["error"]


def test_a_form_without_the_rules_box_leaves_the_rules_alone(app, api, web, groups, new_environment):
    new_environment(PLAIN)
    api("admin").patch(API_ENV, json={"approval_rules": DBA_AND_SRE})
    client = web("admin")
    response = client.post(SETTINGS, data=settings_form(release_stream="QA2", confirm_weakening="1",
                                                        csrf_token=client.csrf))
    assert response.status_code == 303
    saved = api("member").get(API_ENV).json
    assert saved["release_stream"] == "QA2" and saved["approval_rules"] == DBA_AND_SRE


def test_the_weakening_mail_names_the_rules_in_words(app, api, people, groups, new_environment, run_notify_jobs):
    people.add("other-admin", admin=True)
    new_environment(PLAIN)
    api("admin").patch(API_ENV, json={"approval_rules": DBA_AND_SRE})
    api("admin").patch(API_ENV, json={"approval_rules": [DBA_AND_SRE[0]]})
    run_notify_jobs()
    with app.app_context():
        mail = db.session.scalar(sa.select(OutgoingMail).where(OutgoingMail.kind == "gate_weakened")
                                 .order_by(OutgoingMail.id.desc()))
        text = mail.body_text
    assert "approval_rules: dba: 1 of group dba, sre: 2 of group sre -> dba: 1 of group dba" in text


def test_a_count_in_other_digits_is_refused_beside_the_field_not_a_500(app, web, groups, new_environment):
    new_environment(PLAIN)
    client = web("admin")
    response = client.post(SETTINGS, data=settings_form(approval_rules="dba dba \u00b2", csrf_token=client.csrf))
    assert response.status_code == 422
    assert "write a rule as its name, a group" in field_error(response.text, "approval_rules")


def test_rules_naming_a_group_deleted_after_the_check_are_refused_in_the_write(app, groups, new_environment):
    from webapp import environments
    from webapp.accounts import machine_actor
    from webapp.models import Environment

    new_environment(PLAIN)
    with app.app_context():
        checked = [{"name": "ops", "group": "ops", "approvals": 1}]  # as if "ops" was deleted since the check
        environment = db.session.scalar(sa.select(Environment))
        with pytest.raises(environments.SettingsConflict, match="was deleted meanwhile"):
            environments.update_environment(environment, machine_actor(), {"approval_rules": checked})
        db.session.rollback()
        assert db.session.scalar(sa.select(Environment)).approval_rules == DEFAULT


def test_a_projects_commit_address_is_changed_through_the_api(app, api, new_environment):
    new_environment(PLAIN)
    template = "https://git.example.com/svc/commit/{sha}"
    response = api("admin").patch("/api/v1/projects/svc", json={"web_url_template": template})
    assert response.status_code == 200 and response.json["web_url_template"] == template
    assert api("dev").patch("/api/v1/projects/svc", json={"web_url_template": None}).status_code == 403
    refused = api("admin").patch("/api/v1/projects/svc", json={"name": "other"})
    assert refused.status_code == 400 and "Unknown field" in refused.json["error"]
    assert api("member").get("/api/v1/projects").json["items"][0]["web_url_template"] == template
