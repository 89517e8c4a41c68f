"""Authors may not approve: whoever wrote or committed a commit since the last release may not
approve it, known by their address even when their name holds git's field separators; authors
who cannot be told apart, or beyond the listed commits, fail the release instead of waiting.
"""
from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa

from tests.helpers import commit_files, git, trigger
from tests.worker.since_support import API, HOOK, as_author, head
from webapp import releases
from webapp.extensions import db
from webapp.models import Release
from webapp.running import since


def authors_may_not_approve(app) -> None:
    from webapp.models import Environment

    with app.app_context():
        db.session.scalar(sa.select(Environment)).authors_may_not_approve = True
        db.session.commit()


def applied_with_authors_kept_out(app, api, repo: Path, run_jobs) -> None:
    """Turn authors_may_not_approve on and apply a first release (the approver approves it), so
    the next release has commits since it."""
    authors_may_not_approve(app)
    first = trigger(api, ref=head(repo), resources=[API])
    run_jobs()
    api("approver").post(f"/api/v1/releases/{first}/approve", json={})
    run_jobs()


def test_an_author_of_a_commit_since_the_last_release_may_not_approve_it(app, api, web, people, new_environment,
                                                                        run_jobs):
    people.add("alice", "approve_release")  # alice@example.com
    repo = new_environment({HOOK: "exit 2\n"})
    applied_with_authors_kept_out(app, api, repo, run_jobs)
    sha = as_author(repo, "Alice", "alice@example.com", {"app.py": "x = 1\n"}, "Change the app")
    second = trigger(api, ref=sha, resources=[API])
    run_jobs()
    refused = api("alice").post(f"/api/v1/releases/{second}/approve", json={})
    assert refused.status_code == 403
    assert sha[:12] in refused.json["error"] and "Change the app" in refused.json["error"]
    assert api("alice").post(f"/api/v1/releases/{second}/reject", json={}).status_code == 403
    page = web("approver").get(f"/releases/{second}").text
    assert 'id="excluded-authors">alice <span' in page
    assert "does not let the authors of a change approve it" in web("alice").get(f"/releases/{second}").text
    with app.app_context():  # the inbox and the dashboard read many at once: alice counts there neither
        from webapp import approval_rules
        from webapp.models import User

        found = db.session.get(Release, second)
        alice = db.session.scalar(sa.select(User).where(User.username == "alice"))
        many, one = approval_rules.progress_of([found])[second], approval_rules.progress(found)
        assert many.as_json() == one.as_json() and many.counts_for(alice) == one.counts_for(alice) == []
        assert "alice" not in [user.username for rule in many.rules for user in rule.eligible]
    assert api("approver").post(f"/api/v1/releases/{second}/approve", json={}).status_code == 200


def test_the_committer_of_a_commit_since_the_last_release_may_not_approve_it_either(app, api, people,
                                                                                  new_environment, run_jobs):
    import subprocess

    from tests.helpers import GIT_ENV

    people.add("alice", "approve_release")  # alice@example.com
    repo = new_environment({HOOK: "exit 2\n"})
    applied_with_authors_kept_out(app, api, repo, run_jobs)
    (repo / "app.py").write_text("x = 2\n")  # written by Test, committed (applied, rebased) by Alice
    committed_by_alice = {**os.environ, **GIT_ENV, "GIT_COMMITTER_NAME": "Alice",
                          "GIT_COMMITTER_EMAIL": "Alice@Example.com "}
    git(repo, "add", "-A")
    subprocess.run(["git", "commit", "-qm", "Apply the patch"], cwd=repo, env=committed_by_alice, check=True)
    sha = head(repo)
    second = trigger(api, ref=sha, resources=[API])
    run_jobs()
    refused = api("alice").post(f"/api/v1/releases/{second}/approve", json={})
    assert refused.status_code == 403
    assert refused.json["error"].startswith(f"You wrote or committed {sha[:12]} (\u201cApply the patch\u201d)")
    assert api("approver").post(f"/api/v1/releases/{second}/approve", json={}).status_code == 200


def test_an_author_whose_name_holds_gits_field_separators_is_still_known_by_their_address(app, api,
                                                                                         new_environment, run_jobs):
    """git allows unit separators (the log's old field separator) inside a name: they must not
    move the author's and committer's addresses out of their fields and past the check."""
    repo = new_environment({HOOK: "exit 2\n"})
    applied_with_authors_kept_out(app, api, repo, run_jobs)
    sha = as_author(repo, "A\x1fB\x1fC", "approver@example.com", {"app.py": "x = 3\n"}, "Slip it in")
    second = trigger(api, ref=sha, resources=[API])
    run_jobs()
    with app.app_context():
        [commit] = db.session.get(Release, second).since["commits"]
    assert (commit["sha"], commit["author_name"], commit["author_email"], commit["subject"]) == (
        sha, "A B C", "approver@example.com", "Slip it in")
    assert commit["committer_email"] == git(repo, "log", "-1", "--format=%ce")
    refused = api("approver").post(f"/api/v1/releases/{second}/approve", json={})
    assert refused.status_code == 403 and sha[:12] in refused.json["error"]


def test_authors_who_cannot_be_told_apart_fail_the_release_instead_of_waiting(app, api, new_environment, run_jobs):
    repo = new_environment({HOOK: "exit 2\n"})
    applied_with_authors_kept_out(app, api, repo, run_jobs)
    with app.app_context():  # the mirror lost the previous commit: the authors cannot be read
        previous = db.session.scalar(sa.select(Release).where(Release.state == "SUCCEEDED"))
        previous.commit = "e" * 40
        db.session.commit()
    commit_files(repo, {"y.txt": "y\n"}, "More")
    second = trigger(api, ref=head(repo), resources=[API])
    run_jobs()
    with app.app_context():
        found = db.session.get(Release, second)
        assert found.state == "FAILED" and not found.holds_slot
        assert found.since["error"]  # what reading them said, handed on whole
        assert found.error == ("svc/env does not let the authors of a change approve it, but the commits of this "
                               f"release could not be read: {found.since['error']} Fix that, or turn "
                               "authors_may_not_approve off, then trigger the release again.")


def test_a_release_whose_commits_were_never_read_fails_instead_of_waiting(app, api, new_environment):
    """Fail closed on a hook result reported before any run read the commits (no `since` at all)."""
    repo = new_environment({HOOK: "exit 2\n"})
    authors_may_not_approve(app)
    release_id = trigger(api, ref=head(repo), resources=[API])  # READY: no worker has run it
    with app.app_context():
        assert releases.record_hook_result(release_id, exit_code=2, output="", truncated=False) == "FAILED"
        found = db.session.get(Release, release_id)
        assert (found.since, found.holds_slot) == (None, False)
        assert found.error == ("svc/env does not let the authors of a change approve it, but the commits of this "
                               "release could not be read: They were not computed. Fix that, or turn "
                               "authors_may_not_approve off, then trigger the release again.")


def test_authors_beyond_the_listed_commits_fail_the_release_when_authors_may_not_approve(app, api, new_environment,
                                                                                        run_jobs):
    repo = new_environment({HOOK: "exit 2\n"})
    applied_with_authors_kept_out(app, api, repo, run_jobs)
    as_author(repo, "Mallory", "approver@example.com", {"evil.txt": "x\n"}, "The change to hide")
    for number in range(since.MAX_COMMITS):
        git(repo, "commit", "-q", "--allow-empty", "-m", f"cover {number}")
    release_id = trigger(api, ref=head(repo), resources=[API])
    run_jobs()
    with app.app_context():
        found = db.session.get(Release, release_id)
        assert found.state == "FAILED" and "more than the 250 listed" in found.error
