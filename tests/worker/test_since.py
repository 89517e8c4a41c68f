"""What changed since the environment's last successful release, computed by the worker in
real git repositories: a first release, ahead, a rollback, a diverged history after a force
push, a long history cut at 250 commits, a rename and a binary file, the hook reading it, and
history that cannot be read or takes too long.

Authors kept from approving are in test_since_authors.py; where what changed is shown, in
test_since_shown.py.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import sqlalchemy as sa

from tests.helpers import commit_files, git, trigger
from tests.worker.since_support import API, DB, GOES, HOOK, as_author, head, released
from webapp.extensions import db
from webapp.models import Release
from webapp.running import since


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
