"""Mail that tells rather than asks, received by a real SMTP server: the triggerer hears when
their release is approved, rejected, succeeds or fails; the admins hear when a settings or
project change weakens or moves the gate, and nobody when it keeps it.
"""
from __future__ import annotations

import pytest

from tests.helpers import trigger
from tests.notify_support import text_part
from tests.worker.email_support import (
    WAITS,
    app_config,  # noqa: F401 - a fixture, used by name
    pending,
)


def test_the_triggerer_hears_when_their_release_is_approved_and_when_it_succeeds(
        app, api, new_environment, run_jobs, run_notify_jobs, smtp_server):
    new_environment(WAITS)
    release_id = pending(api, run_jobs, run_notify_jobs)
    smtp_server.messages.clear()
    response = api("approver").post(f"/api/v1/releases/{release_id}/approve", json={"comment": "ship it"})
    assert response.status_code == 200, response.json
    bot_id = response.json["bot_release_id"]
    run_jobs()
    run_notify_jobs()
    subjects = [m["Subject"] for m in smtp_server.inbox.to("dev@example.com")]
    assert f"[Releasegate] svc/env: release #{release_id} was approved by approver" in subjects
    succeeded = [s for s in subjects if "succeeded" in s]
    assert succeeded == [f"[Releasegate] svc/env: release #{release_id} succeeded (bot release #{bot_id})"]
    approved = next(m for m in smtp_server.messages if "approved" in m["Subject"])
    assert "Comment:\r\n  | ship it\r\n" in text_part(approved)
    # Nobody else is told about the outcome; approvers got nothing new.
    assert {m["To"].addresses[0].username for m in smtp_server.messages} == {"dev"}


def test_the_triggerer_hears_when_their_release_is_rejected(api, new_environment, run_jobs, run_notify_jobs,
                                                            smtp_server):
    new_environment(WAITS)
    release_id = pending(api, run_jobs, run_notify_jobs)
    smtp_server.messages.clear()
    api("admin").post(f"/api/v1/releases/{release_id}/reject", json={"comment": "not on a Friday"})
    run_notify_jobs()
    [message] = smtp_server.messages
    assert message["Subject"] == f"[Releasegate] svc/env: release #{release_id} was rejected by admin"
    assert "Comment:\r\n  | not on a Friday\r\n" in text_part(message)


def test_the_triggerer_hears_when_their_release_fails(api, new_environment, run_jobs, run_notify_jobs,
                                                      smtp_server):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "echo broken\nexit 7\n"})
    release_id = trigger(api, "dev")
    run_jobs()
    run_notify_jobs()
    [message] = smtp_server.messages
    assert message["To"].addresses[0].username == "dev"
    assert message["Subject"] == f"[Releasegate] svc/env: release #{release_id} failed"
    assert "Error:\r\n  | The pre-release hook exited 7; its last line: \u201cbroken\u201d\r\n" in text_part(message)


@pytest.mark.parametrize(("settings", "changes", "lines"), [
    ({}, {"approval_workflow": False, "hook_timeout_seconds": 30},
     ["approval_workflow: True -> False  (weakens the gate)", "hook_timeout_seconds: 300 -> 30"]),
    ({"authors_may_not_approve": True}, {"authors_may_not_approve": False},  # authors may approve again
     ["authors_may_not_approve: True -> False  (weakens the gate)"]),
], ids=["workflow off", "authors may approve"])
def test_a_settings_change_that_weakens_the_gate_mails_the_admins(api, people, new_environment, run_notify_jobs,
                                                                   smtp_server, settings, changes, lines):
    people.add("admin2", admin=True)
    new_environment(WAITS, **settings)
    response = api("admin").patch("/api/v1/projects/svc/environments/env", json=changes)
    assert response.status_code == 200, response.json
    run_notify_jobs()
    [message] = smtp_server.messages  # the admin who made the change knows already
    assert message["To"].addresses[0].username == "admin2"
    assert message["Subject"] == "[Releasegate] svc/env: approval gate weakened by admin"
    text = text_part(message)
    assert all(line in text for line in lines), text


def test_a_project_change_that_moves_the_gate_mails_the_admins(app, api, web, people, new_environment,
                                                               run_notify_jobs, smtp_server):
    people.add("admin2", admin=True)
    repo = new_environment(WAITS)
    admin = web("admin")
    response = admin.post("/admin/projects/svc", data={"csrf_token": admin.csrf, "repo": str(repo),
                                                       "branch": "main", "hook_ref": "refs/heads/lenient"})
    assert response.status_code == 302
    run_notify_jobs()
    [message] = smtp_server.messages  # the admin who made the change knows already
    assert message["To"].addresses[0].username == "admin2"
    assert message["Subject"] == "[Releasegate] svc/env: approval gate weakened by admin"
    text = text_part(message)
    assert "project.hook_ref: (none) -> refs/heads/lenient  (weakens the gate)" in text
    assert "https://rg.example.com/admin/projects/svc" in text


def test_a_settings_change_that_keeps_the_gate_mails_nobody(api, new_environment, run_notify_jobs, smtp_server):
    new_environment(WAITS)
    assert api("admin").patch("/api/v1/projects/svc/environments/env",
                              json={"hook_timeout_seconds": 30}).status_code == 200
    run_notify_jobs()
    assert smtp_server.messages == []
