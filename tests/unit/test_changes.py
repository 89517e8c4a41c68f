"""What changed since the last release, in words: the summary line, rollbacks, folders, links."""
from __future__ import annotations

from datetime import timedelta

from webapp import changes
from webapp.extensions import db
from webapp.models import Project, Release, User, utcnow


def commit(sha: str, author: str, undone: bool = False) -> dict:
    return {"sha": sha * 40, "author_name": author, "author_email": f"{author}@x", "committer_email": "c@x",
            "authored_at": "2026-12-01T10:00:00+00:00", "subject": f"work by {author}", "undone": undone}


AHEAD = {"previous_release_id": None, "previous_commit": None, "relation": "ahead",
         "commits": [commit("a", "alice"), commit("b", "dan"), commit("c", "alice")], "commits_truncated": False,
         "files": [{"path": "app/main.py", "added": 400, "deleted": 90, "binary": False, "renamed_from": None},
                   {"path": "migrations/0002.sql", "added": 10, "deleted": 6, "binary": False, "renamed_from": None},
                   {"path": "logo.png", "added": None, "deleted": None, "binary": True, "renamed_from": None}],
         "files_truncated": False,
         "resources": {"counts": {"added": 2, "removed": 0, "changed": 1, "same": 4}}, "error": None}


def test_the_summary_names_the_previous_release_its_age_and_who_deployed_it(app):
    with app.app_context():
        carol = User(username="carol", password_hash="x")
        project = Project(name="shop", repo="/r")
        db.session.add_all([carol, project])
        db.session.flush()
        from webapp.models import Environment

        environment = Environment(project_id=project.id, name="prod", release_stream="PROD")
        db.session.add(environment)
        db.session.flush()
        previous = Release(project_id=project.id, environment_id=environment.id, state="SUCCEEDED", resources=[],
                           triggered_by=carol, finished_at=utcnow() - timedelta(days=3, minutes=5))
        db.session.add(previous)
        db.session.flush()
        release = Release(since={**AHEAD, "previous_release_id": previous.id})
        assert changes.summary(release) == (f"Since release #{previous.id} (deployed 3 days ago by carol): "
                                            "3 commits by alice, dan \u00b7 3 files (+410 \u221296) \u00b7 "
                                            "resources: 2 added, 1 changed")
        db.session.rollback()


def test_a_first_release_a_rollback_a_divergence_and_an_error_are_said_in_words(app):
    with app.app_context():
        assert changes.summary(Release(since=None)) is None
        first = {**AHEAD, "relation": None, "commits": [], "files": []}
        assert changes.summary(Release(since=first)) == ("First release of this environment: "
                                                        "resources: 2 added, 1 changed")
        back = {**AHEAD, "relation": "behind", "commits": [commit("a", "bob", undone=True)], "files": []}
        assert "rollback: undoes 1 commit by bob" in changes.summary(Release(since=back))
        diverged = {**AHEAD, "relation": "diverged", "commits": [commit("a", "x"), commit("b", "y", undone=True)]}
        assert "history diverged: 1 new commit, 1 undone" in changes.summary(Release(since=diverged))
        assert changes.is_rollback_or_diverged(back) and not changes.is_rollback_or_diverged(AHEAD)
        broken = {**AHEAD, "error": "What changed could not be computed (gone)."}
        assert changes.summary(Release(since=broken)).endswith("what changed could not be computed")
        truncated = {**AHEAD, "commits_truncated": True}
        assert "3 commits+ by" in changes.summary(Release(since=truncated))


def test_files_are_grouped_by_folder_with_migrations_and_hooks_marked():
    grouped = changes.folders(AHEAD["files"])
    assert [(f.name, [x["path"] for x in f.files], f.added, f.deleted) for f in grouped] == [
        ("", ["logo.png"], 0, 0), ("app", ["app/main.py"], 400, 90), ("migrations", ["migrations/0002.sql"], 10, 6)]
    assert changes.highlight("migrations/0002.sql") == "migration"
    assert changes.highlight("db/alembic/versions/x.py") == "migration"
    assert changes.highlight("shop/pre_release_hooks/pre_release_hook.py") == "hook"
    assert changes.highlight("app/main.py") is None


def test_a_commit_links_to_the_projects_web_view_only_through_an_http_template():
    sha = "a" * 40
    assert changes.commit_url(Project(web_url_template="https://git.example.com/shop/commit/{sha}"), sha) == (
        f"https://git.example.com/shop/commit/{sha}")
    assert changes.commit_url(Project(web_url_template=None), sha) is None
    assert changes.commit_url(Project(web_url_template="javascript:alert(1)//{sha}"), sha) is None
    assert changes.commit_url(Project(web_url_template="https://git.example.com/no-placeholder"), sha) is None


def test_ages_read_like_a_person_says_them():
    now = utcnow()
    assert changes.ago(now, now) == "just now"
    assert changes.ago(now - timedelta(minutes=12), now) == "12 min ago"
    assert changes.ago(now - timedelta(hours=5), now) == "5 h ago"
    assert changes.ago(now - timedelta(days=1), now) == "1 day ago"
    assert changes.ago(now - timedelta(days=3), now) == "3 days ago"


def test_a_commit_date_out_of_range_is_shown_as_unknown_not_an_error():
    assert changes.authored({"authored_at": "9999-12-31T23:00:00-02:00"}) is None
    assert changes.authored({"authored_at": "not a date"}) is None
    assert changes.authored({"authored_at": "2026-12-01T10:00:00+01:00"}).isoformat() == "2026-12-01T09:00:00"


def test_the_summary_names_three_authors_at_most_and_cuts_a_long_name(app):
    long_name = "Mallory " + "x" * 3000  # git keeps whatever an author writes
    commits = [commit(str(n), name) for n, name in enumerate(["alice", long_name, "dan", "erin", "frank"])]
    with app.app_context():
        said = changes.summary(Release(since={**AHEAD, "previous_release_id": None, "commits": commits}))
    assert f"5 commits by alice, Mallory {'x' * 31}\u2026, dan and 2 others" in said  # 40 characters a name
    assert len(said) < 200
