"""What changed since the environment's last successful release, computed by the worker in
real git repositories: a first release, ahead, a rollback, a diverged history after a force
push, a long history cut at 250 commits, a rename and a binary file, the hook reading it."""
from __future__ import annotations

import json
import os
from pathlib import Path

import sqlalchemy as sa

from tests.helpers import commit_files, git, make_repo, trigger
from webapp.extensions import db
from webapp.models import Release
from webapp.running import since

HOOK = "svc/pre_release_hooks/pre_release_hook.sh"
GOES = {HOOK: "exit 0\n"}
API = {"resourceType": "service", "resourceName": "api", "resourcePath": "svc/api.json",
       "changeType": "UPDATE_IN_PLACE"}
DB = {"resourceType": "postgres", "resourceName": "orders", "resourcePath": "db/orders.json", "changeType": "CREATE"}


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD")


def released(app, api, run_jobs, commit: str, resources: list | None = None) -> dict:
    """Trigger a release of `commit`, run it to its end, and return what it stored as `since`."""
    release_id = trigger(api, ref=commit, resources=[API] if resources is None else resources)
    run_jobs()
    with app.app_context():
        found = db.session.get(Release, release_id)
        assert found.state == "SUCCEEDED", (found.state, found.error)
        return {"id": release_id, **found.since}


def as_author(repo: Path, name: str, email: str, files: dict, message: str) -> str:
    """Commit `files` written by `name` <`email`>; the tests' own identity commits it."""
    for path, content in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(content)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message, f"--author={name} <{email}>")
    return head(repo)


def test_a_first_release_has_nothing_before_it(app, api, new_environment, run_jobs):
    repo = new_environment(GOES)
    first = released(app, api, run_jobs, head(repo))
    assert first["previous_release_id"] is None and first["previous_commit"] is None
    assert first["relation"] is None and first["commits"] == [] and first["error"] is None
    assert first["resources"]["counts"] == {"added": 1, "removed": 0, "changed": 0, "same": 0}


def test_ahead_lists_the_commits_files_and_resource_changes_since_the_last_release(app, api, new_environment,
                                                                                  run_jobs):
    repo = new_environment(GOES)
    first = released(app, api, run_jobs, head(repo))
    as_author(repo, "Alice", "alice@example.com", {"app.py": "print('a')\nprint('b')\n"}, "Add the app")
    (repo / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Add the logo")
    now = head(repo)
    second = released(app, api, run_jobs, now, resources=[{**API, "changeType": "DELETE"}, DB])
    assert second["previous_release_id"] == first["id"] and second["relation"] == "ahead"
    assert [c["subject"] for c in second["commits"]] == ["Add the logo", "Add the app"]
    alice = second["commits"][1]
    assert (alice["author_name"], alice["author_email"]) == ("Alice", "alice@example.com")
    assert alice["committer_email"] == git(repo, "log", "-1", "--format=%ce") != "alice@example.com"
    assert second["commits"][0]["sha"] == now and not any(c["undone"] for c in second["commits"])
    files = {f["path"]: f for f in second["files"]}
    assert files["app.py"] == {"path": "app.py", "added": 2, "deleted": 0, "binary": False, "renamed_from": None}
    assert files["logo.png"]["binary"] is True and files["logo.png"]["added"] is None
    assert second["resources"]["changed"] == [{"path": "svc/api.json", "from": "UPDATE_IN_PLACE", "to": "DELETE"}]
    assert second["resources"]["added"] == ["db/orders.json"]


def test_the_same_commit_again_changes_no_file(app, api, new_environment, run_jobs):
    repo = new_environment(GOES)
    released(app, api, run_jobs, head(repo))
    again = released(app, api, run_jobs, head(repo))
    assert again["relation"] == "same" and again["commits"] == [] and again["files"] == []
    assert again["resources"]["counts"]["same"] == 1


def test_a_rollback_lists_the_commits_it_undoes(app, api, new_environment, run_jobs):
    repo = new_environment(GOES)
    old = head(repo)
    commit_files(repo, {"feature.txt": "new\n"}, "Add the feature")
    released(app, api, run_jobs, head(repo))
    back = released(app, api, run_jobs, old)
    assert back["relation"] == "behind"
    assert [(c["subject"], c["undone"]) for c in back["commits"]] == [("Add the feature", True)]
    assert back["files"] == [{"path": "feature.txt", "added": 0, "deleted": 1, "binary": False, "renamed_from": None}]


def test_a_force_push_gives_a_diverged_history(app, api, new_environment, run_jobs):
    repo = new_environment(GOES)
    base = head(repo)
    commit_files(repo, {"a.txt": "a\n"}, "On the old branch")
    released(app, api, run_jobs, head(repo))
    git(repo, "reset", "-q", "--hard", base)
    commit_files(repo, {"b.txt": "b\n"}, "On the new branch")  # main was force-pushed
    diverged = released(app, api, run_jobs, "main")
    assert diverged["relation"] == "diverged"
    assert [(c["subject"], c["undone"]) for c in diverged["commits"]] == [("On the new branch", False),
                                                                         ("On the old branch", True)]
    assert sorted(f["path"] for f in diverged["files"]) == ["a.txt", "b.txt"]


def test_more_than_250_commits_are_cut_and_say_so(app, api, new_environment, run_jobs):
    repo = new_environment(GOES)
    released(app, api, run_jobs, head(repo))
    for number in range(since.MAX_COMMITS + 5):
        git(repo, "commit", "-q", "--allow-empty", "-m", f"step {number}")
    long = released(app, api, run_jobs, head(repo))
    assert len(long["commits"]) == since.MAX_COMMITS and long["commits_truncated"] is True
    assert long["commits"][0]["subject"] == f"step {since.MAX_COMMITS + 4}"


def test_a_rename_is_one_file_with_where_it_came_from(app, api, new_environment, run_jobs):
    repo = new_environment({**GOES, "docs/guide.md": "".join(f"line {n}\n" for n in range(40))})
    released(app, api, run_jobs, head(repo))
    git(repo, "mv", "docs/guide.md", "docs/handbook.md")
    git(repo, "commit", "-q", "-m", "Rename the guide")
    renamed = released(app, api, run_jobs, head(repo))
    assert renamed["files"] == [{"path": "docs/handbook.md", "added": 0, "deleted": 0, "binary": False,
                                 "renamed_from": "docs/guide.md"}]


def test_history_that_cannot_be_read_is_a_sentence_and_the_release_goes_on(app, api, new_environment, run_jobs):
    repo = new_environment(GOES)
    released(app, api, run_jobs, head(repo))
    with app.app_context():  # as if the mirror lost the previous commit (history rewritten, gc'd)
        previous = db.session.scalar(sa.select(Release).order_by(Release.id.desc()))
        previous.commit = "f" * 40
        db.session.commit()
    commit_files(repo, {"x.txt": "x\n"}, "More")
    after = released(app, api, run_jobs, head(repo))
    assert after["relation"] is None and after["commits"] == []
    assert "could not be computed" in after["error"] and "no longer in the repository" in after["error"]


def test_the_hook_reads_the_commits_and_files_from_its_payload(app, api, new_environment, run_jobs):
    hook = ("import json, sys\npayload = json.load(open(sys.argv[1]))\n"
            "print('previous', payload['previousCommit'])\n"
            "print('subjects', [c['subject'] for c in payload['commits']])\n"
            "print('files', [f['path'] for f in payload['files']])\n"
            "sys.exit(2 if any(f['path'].startswith('migrations/') for f in payload['files']) else 0)\n")
    repo = new_environment({"svc/pre_release_hooks/pre_release_hook.py": hook})
    first_commit = head(repo)
    released(app, api, run_jobs, first_commit)
    commit_files(repo, {"migrations/0002_orders.sql": "ALTER TABLE orders ADD note text;\n"}, "Add a migration")
    release_id = trigger(api, ref=head(repo), resources=[API])
    run_jobs()
    with app.app_context():
        found = db.session.get(Release, release_id)
        assert found.state == "PENDING_APPROVAL"
        assert f"previous {first_commit}" in found.hook_output
        assert "subjects ['Add a migration']" in found.hook_output
        assert "files ['migrations/0002_orders.sql']" in found.hook_output


def test_a_bot_release_carries_what_its_release_was_approved_with(app, api, new_environment, run_jobs):
    repo = new_environment({HOOK: "exit 2\n"})
    release_id = trigger(api, ref=head(repo), resources=[API])
    run_jobs()
    assert api("approver").post(f"/api/v1/releases/{release_id}/approve", json={}).status_code == 200
    run_jobs()
    with app.app_context():
        original = db.session.get(Release, release_id)
        bot = original.bot_release
        assert bot.state == "SUCCEEDED" and bot.since == original.since
        assert json.dumps(bot.since)  # stored as plain JSON


def test_the_documented_migration_hook_asks_for_approval_only_when_a_migration_changed(app, api, new_environment,
                                                                                      run_jobs):
    text = (Path(__file__).resolve().parents[2] / "docs" / "hooks.md").read_text()
    example = text[text.index("A hook that asks for approval when a migration changed"):]
    hook = example[example.index("```python\n") + len("```python\n"):example.index("```\n", 10)]
    repo = new_environment({"svc/pre_release_hooks/pre_release_hook.py": hook})
    released(app, api, run_jobs, head(repo))  # the first: nothing changed before it
    commit_files(repo, {"README.md": "words\n"}, "Words")
    released(app, api, run_jobs, head(repo))
    commit_files(repo, {"migrations/0002.sql": "ALTER TABLE t ADD c int;\n"}, "Migration")
    release_id = trigger(api, ref=head(repo), resources=[API])
    run_jobs()
    with app.app_context():
        found = db.session.get(Release, release_id)
        assert found.state == "PENDING_APPROVAL" and "migrations/0002.sql" in found.hook_output


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
        assert "does not let the authors of a change approve it" in found.error


def test_the_api_and_the_release_page_show_what_changed(app, api, web, new_environment, run_jobs):
    repo = new_environment({HOOK: "exit 2\n"})
    with app.app_context():
        from webapp.models import Project

        db.session.scalar(sa.select(Project)).web_url_template = "https://git.example.com/svc/commit/{sha}"
        db.session.commit()
    first = trigger(api, ref=head(repo), resources=[API])
    run_jobs()
    bot = api("approver").post(f"/api/v1/releases/{first}/approve", json={}).json["bot_release_id"]
    run_jobs()
    sha = as_author(repo, "Alice", "alice@example.com", {"migrations/0002.sql": "ALTER TABLE t ADD c int;\n"},
                    "Add a <b>migration</b>")
    second = trigger(api, ref=sha, resources=[API, DB])
    run_jobs()
    data = api("member").get(f"/api/v1/releases/{second}").json
    # The last SUCCEEDED release is the bot release that applied the first; dev asked for it.
    assert data["since"]["relation"] == "ahead" and data["since"]["previous_release_id"] == bot
    assert data["since_summary"].startswith(f"Since release #{bot} (deployed just now by dev): 1 commit by Alice")
    alone = api("member").get(f"/api/v1/releases/{second}/since")
    assert alone.status_code == 200 and alone.json == data["since"]
    page = web("member").get(f"/releases/{second}").text
    assert f"Since release #{bot} (deployed just now by dev): 1 commit by Alice" in page
    assert f'href="https://git.example.com/svc/commit/{sha}"' in page
    assert "Add a &lt;b&gt;migration&lt;/b&gt;" in page  # a subject is the branch's text, escaped
    assert 'class="highlight highlight-migration"' in page
    assert "<strong>1 added:</strong> <code>db/orders.json</code>" in page


def test_the_approval_mail_and_the_inbox_carry_what_changed(app, api, web, new_environment, run_jobs,
                                                             run_notify_jobs):
    from webapp.models import OutgoingMail

    repo = new_environment({HOOK: "exit 2\n"})
    first = trigger(api, ref=head(repo), resources=[API])
    run_jobs()
    bot = api("approver").post(f"/api/v1/releases/{first}/approve", json={}).json["bot_release_id"]
    run_jobs()
    commit_files(repo, {"a.txt": "a\n"}, "Tidy <script>alert(1)</script>")
    commit_files(repo, {"b.txt": "b\n"}, "Second")
    second = trigger(api, ref=head(repo), resources=[API])
    run_jobs()
    run_notify_jobs()
    with app.app_context():
        mail = db.session.scalar(sa.select(OutgoingMail).where(OutgoingMail.release_id == second,
                                                               OutgoingMail.kind == "approval_request"))
        text, html = mail.body_text, mail.body_html
    assert f"Since release #{bot} (deployed just now by dev): 2 commits by Test" in text
    assert "Tidy <script>alert(1)</script> (Test)" in text
    assert "Tidy &lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    inbox = web("approver").get("/approvals").text
    assert "2 commits · 2 files" in inbox


def test_a_migration_hidden_behind_a_thousand_files_still_asks_for_approval(app, api, new_environment, run_jobs):
    text = (Path(__file__).resolve().parents[2] / "docs" / "hooks.md").read_text()
    example = text[text.index("A hook that asks for approval when a migration changed"):]
    hook = example[example.index("```python\n") + len("```python\n"):example.index("```\n", 10)]
    repo = new_environment({"svc/pre_release_hooks/pre_release_hook.py": hook})
    released(app, api, run_jobs, head(repo))
    commit_files(repo, {"migrations/0042_drop_orders.sql": "DROP TABLE orders;\n",
                        **{f"a/{number:04}.txt": "x\n" for number in range(since.MAX_FILES)}}, "Padding")
    release_id = trigger(api, ref=head(repo), resources=[API])
    run_jobs()
    with app.app_context():
        found = db.session.get(Release, release_id)
        assert found.since["files_truncated"] is True
        assert all(not f["path"].startswith("migrations/") for f in found.since["files"])  # cut off
        assert found.state == "PENDING_APPROVAL" and "the list was cut" in found.hook_output


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


def test_a_deployed_commit_force_pushed_away_is_still_compared_with(app, api, new_environment, run_jobs):
    """The mirror keeps every commit a release command ran on, so a force push and a gc that
    drop it from the repository's branches leave the next release a history to compare."""
    repo = new_environment(GOES, release_command="true")
    base = head(repo)
    commit_files(repo, {"a.txt": "a\n"}, "Deployed, then force-pushed away")
    released(app, api, run_jobs, head(repo))
    git(repo, "reset", "-q", "--hard", base)
    commit_files(repo, {"b.txt": "b\n"}, "The new history")
    with app.app_context():
        from webapp.running import git as gitcli

        mirror = gitcli.mirror_path(str(repo), Path(app.config["REPO_CACHE_DIR"]))
    git(mirror, "fetch", "--prune", "--quiet", "origin")  # what the next fetch does, then a gc
    git(mirror, "-c", "gc.reflogExpire=now", "-c", "gc.reflogExpireUnreachable=now", "gc", "--quiet", "--prune=now")
    after = released(app, api, run_jobs, head(repo))
    assert after["error"] is None and after["relation"] == "diverged"
    assert ("Deployed, then force-pushed away", True) in [(c["subject"], c["undone"]) for c in after["commits"]]


def test_a_since_git_command_beyond_its_time_bound_is_a_sentence_and_the_release_goes_on(
        app, api, new_environment, run_jobs, tmp_path, monkeypatch):
    import shutil

    repo = new_environment({HOOK: "echo the hook ran\nexit 0\n"})
    released(app, api, run_jobs, head(repo))
    commit_files(repo, {"x.txt": "x\n"}, "More")
    # A git that never answers whether one commit comes before another; every other command is git's own.
    slow = tmp_path / "slow-git"
    slow.mkdir()
    (slow / "git").write_text(f'#!/bin/sh\ncase " $* " in *" merge-base --is-ancestor "*) exec sleep 600 ;; esac\n'
                              f'exec {shutil.which("git")} "$@"\n')
    (slow / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{slow}:{os.environ['PATH']}")
    monkeypatch.setattr(since, "GIT_SECONDS", 1)
    after = released(app, api, run_jobs, head(repo))
    assert after["relation"] is None and after["commits"] == [] and after["files"] == []
    assert after["error"].startswith(f"What changed since release #{after['previous_release_id']} could not be "
                                     "computed (git merge-base took longer than 1 s")
    assert after["error"].endswith("compare the commits by hand.")
    with app.app_context():
        assert "the hook ran" in db.session.get(Release, after["id"]).hook_output


def test_a_resource_the_last_release_had_and_this_one_drops_is_listed_as_removed(app, api, web, new_environment,
                                                                                 run_jobs):
    repo = new_environment(GOES)
    released(app, api, run_jobs, head(repo), resources=[API, DB])
    dropped = released(app, api, run_jobs, head(repo), resources=[API])
    assert dropped["resources"]["removed"] == ["db/orders.json"] and dropped["resources"]["added"] == []
    assert dropped["resources"]["counts"] == {"added": 0, "removed": 1, "changed": 0, "same": 1}
    page = web("member").get(f"/releases/{dropped['id']}").text
    assert "resources: 1 removed" in page
    assert "<strong>1 no longer changed:</strong> <code>db/orders.json</code>" in page


def test_a_diverged_history_is_said_in_words_in_the_warning_colour_on_the_release_page(app, api, web,
                                                                                       new_environment, run_jobs):
    repo = new_environment({HOOK: "exit 2\n"})
    base = head(repo)
    commit_files(repo, {"a.txt": "a\n"}, "On the old branch")
    first = trigger(api, ref=head(repo), resources=[API])
    run_jobs()
    bot = api("approver").post(f"/api/v1/releases/{first}/approve", json={}).json["bot_release_id"]
    run_jobs()
    git(repo, "reset", "-q", "--hard", base)
    commit_files(repo, {"b.txt": "b\n"}, "On the new branch")  # main was force-pushed
    second = trigger(api, ref="main", resources=[API])
    run_jobs()
    page = web("member").get(f"/releases/{second}").text
    assert ('<p class="message message-warning since-warning" role="note"><strong>The history diverged</strong> '
            "(a force push?): this commit does not contain what runs there now.") in page
    assert (f'<span class="since-summary warning" id="since-summary"><a href="#since">Since release #{bot} '
            "(deployed just now by dev): history diverged: 1 new commit, 1 undone (a force push?)") in page
    assert '<tr class="undone">' in page and "On the old branch" in page and "On the new branch" in page


def page_after_a_commit(app, api, web, repo: Path, run_jobs) -> tuple[str, str]:
    """Release the head of `repo`, then a commit on it: the second release's page and that commit."""
    released(app, api, run_jobs, head(repo))
    sha = as_author(repo, "Alice", "alice@example.com", {"app.py": "x = 1\n"}, "Change the app")
    second = released(app, api, run_jobs, sha)
    return web("member").get(f"/releases/{second['id']}").text, sha


def test_a_commit_address_saved_in_the_admin_project_form_links_the_commits_on_the_release_page(
        app, api, web, people, new_environment, run_jobs):
    people.add("envmgr", "manage_environments")
    repo = new_environment(GOES)
    template = "https://git.example.com/svc/commit/{sha}"
    envmgr = web("envmgr")
    saved = envmgr.post("/admin/projects/svc", data={"csrf_token": envmgr.csrf, "repo": str(repo), "branch": "main",
                                                      "hook_ref": "", "web_url_template": template})
    assert saved.status_code == 302 and "changed web_url_template" in envmgr.get(saved.location).text
    assert api("member").get("/api/v1/projects").json["items"][0]["web_url_template"] == template
    page, sha = page_after_a_commit(app, api, web, repo, run_jobs)
    assert f'<a href="https://git.example.com/svc/commit/{sha}" rel="noopener noreferrer"><code>{sha[:12]}' in page


def test_a_commit_address_given_to_projects_create_links_the_commits_on_the_release_page(app, api, web, tmp_path,
                                                                                         run_jobs):
    repo = make_repo(tmp_path / "made-on-the-command-line", GOES)
    template = "https://git.example.com/svc/-/commit/{sha}"
    cli = app.test_cli_runner()
    refused = cli.invoke(args=["projects", "create", "svc", "--repo", str(repo),
                               "--web-url-template", "https://git.example.com/no-sha"])
    assert refused.exit_code != 0 and "--web-url-template" in refused.output and "{sha}" in refused.output
    created = cli.invoke(args=["projects", "create", "svc", "--repo", str(repo), "--web-url-template", template])
    assert created.exit_code == 0, created.output
    assert api("admin").post("/api/v1/projects/svc/environments",
                             json={"name": "env", "release_stream": "QA"}).status_code == 201
    assert api("member").get("/api/v1/projects").json["items"][0]["web_url_template"] == template
    page, sha = page_after_a_commit(app, api, web, repo, run_jobs)
    assert f'<a href="https://git.example.com/svc/-/commit/{sha}" rel="noopener noreferrer"><code>{sha[:12]}' in page


def test_a_commit_address_given_in_the_admin_create_project_form_links_the_commits_on_the_release_page(
        app, api, web, tmp_path, run_jobs):
    repo = make_repo(tmp_path / "made-in-the-form", GOES)
    template = "https://git.example.com/svc/commit/{sha}"
    admin = web("admin")
    form = {"csrf_token": admin.csrf, "name": "svc", "repo": str(repo), "branch": "main", "hook_ref": ""}
    refused = admin.post("/admin/projects", data={**form, "web_url_template": "https://git.example.com/no-sha"})
    assert refused.status_code == 422 and "{sha}" in refused.text
    assert api("member").get("/api/v1/projects").json["items"] == []  # nothing made
    created = admin.post("/admin/projects", data={**form, "web_url_template": template})
    assert created.status_code == 302, created.text
    assert api("admin").post("/api/v1/projects/svc/environments",
                             json={"name": "env", "release_stream": "QA"}).status_code == 201
    assert api("member").get("/api/v1/projects").json["items"][0]["web_url_template"] == template
    page, sha = page_after_a_commit(app, api, web, repo, run_jobs)
    assert f'<a href="https://git.example.com/svc/commit/{sha}" rel="noopener noreferrer"><code>{sha[:12]}' in page
