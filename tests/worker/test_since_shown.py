"""Where what changed since the last release is shown: the API and the release page, the
approval mail and the inbox, a dropped resource listed as removed, a diverged history said in
words, and commits linked through the project's commit address.
"""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from tests.helpers import commit_files, git, make_repo, trigger
from tests.worker.since_support import API, DB, GOES, HOOK, as_author, head, released
from webapp.extensions import db


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
