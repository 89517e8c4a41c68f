"""Who may decide a release, in the sentences the API refuses with: authors and committers of its
change where the environment keeps them out (permissions.authorship_refusal), someone without an
email address there, and someone without the permission (permissions._missing)."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.helpers import trigger
from webapp.extensions import db
from webapp.models import Environment, Release, User
from webapp.permissions import authorship_refusal

WAITS = {"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"}
SHA = "0123456789abcdef0123456789abcdef01234567"


def commit(author: str, committer: str = "test@localhost") -> dict:
    """A commit as running/since.py records it."""
    return {"sha": SHA, "author_name": "Someone", "author_email": author, "committer_email": committer,
            "authored_at": "2026-12-01T10:00:00+00:00", "subject": "Change the app", "undone": False}


@pytest.fixture()
def waiting(app, api, new_environment, run_jobs):
    """A release dev triggered, pending approval, on svc/env with authors_may_not_approve on;
    waiting(commits) records `commits` as what changed since the last release."""
    new_environment(WAITS)
    release_id = trigger(api)
    run_jobs()

    def record(commits: list[dict] | None) -> int:
        with app.app_context():
            db.session.scalar(sa.select(Environment)).authors_may_not_approve = True
            db.session.execute(sa.update(Release).where(Release.id == release_id).values(
                since=None if commits is None else {"relation": "ahead", "commits": commits}))
            db.session.commit()
        return release_id

    return record


def test_the_author_of_a_commit_is_refused_with_the_whole_sentence(api, waiting):
    release_id = waiting([commit("someone@example.com"), commit(" Approver@Example.COM")])
    refused = api("approver").post(f"/api/v1/releases/{release_id}/approve", json={})
    assert refused.status_code == 403
    assert refused.json["error"] == (
        "You wrote or committed 0123456789ab (\u201cChange the app\u201d), which is part of this release, and "
        "svc/env does not let the authors of a change approve it; someone else must decide.")


def test_the_committer_of_a_commit_is_refused_with_the_whole_sentence(api, waiting):
    release_id = waiting([commit("someone@example.com", committer="approver@example.com")])
    refused = api("approver").post(f"/api/v1/releases/{release_id}/reject", json={})
    assert refused.status_code == 403
    assert refused.json["error"] == (
        "You wrote or committed 0123456789ab (\u201cChange the app\u201d), which is part of this release, and "
        "svc/env does not let the authors of a change approve it; someone else must decide.")
    assert api("admin").post(f"/api/v1/releases/{release_id}/approve", json={}).status_code == 200


def test_someone_without_an_email_address_is_refused_and_told_to_ask_for_one(app, api, waiting):
    release_id = waiting([commit("someone@example.com")])
    with app.app_context():
        db.session.scalar(sa.select(User).where(User.username == "approver")).email = ""
        db.session.commit()
    refused = api("approver").post(f"/api/v1/releases/{release_id}/approve", json={})
    assert refused.status_code == 403
    assert refused.json["error"] == (
        "svc/env does not let the authors of a change approve it, and your account has no email address to tell "
        "you apart from them; ask an admin to set it.")


def test_a_release_whose_change_is_not_known_yet_keeps_nobody_out(app, api, waiting):
    release_id = waiting(None)
    with app.app_context():
        approver = db.session.scalar(sa.select(User).where(User.username == "approver"))
        assert authorship_refusal(None, approver, "svc/env") is None
    assert api("approver").post(f"/api/v1/releases/{release_id}/approve", json={}).status_code == 200


def test_someone_without_the_permission_is_told_which_one_and_where(api, waiting):
    release_id = waiting([])
    refused = api("member").post(f"/api/v1/releases/{release_id}/approve", json={})
    assert refused.status_code == 403
    assert refused.json["error"] == ("You need the \u201cRelease Approval/Reject\u201d permission on svc/env to do "
                                     "this; ask an admin for a grant.")
