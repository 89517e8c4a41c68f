"""The pending-approvals inbox and the count in the navigation bar, per persona."""
from __future__ import annotations

import re

import sqlalchemy as sa

from tests.web.test_release_pages import HX, MIXED, WAITS, pending
from webapp.extensions import db
from webapp.models import Environment

# -- the pending-approvals inbox -------------------------------------------------------------------------

def test_the_inbox_lists_only_what_the_user_may_decide_oldest_first(app, api, web, new_environment, run_jobs,
                                                                  people):
    new_environment(WAITS, name="first")
    new_environment(WAITS, name="second")
    new_environment(WAITS, name="third")
    with app.app_context():
        second = db.session.scalar(sa.select(Environment).where(Environment.name == "second"))
        people.add("scoped", "approve_release", environment=second)
    older = pending(api, run_jobs, path="svc/first", resources=MIXED)
    newer = pending(api, run_jobs, path="svc/second")
    own = pending(api, run_jobs, who="approver", path="svc/third")

    page = web("approver").get("/approvals").text
    listed = [int(n) for n in re.findall(r'<a href="/releases/(\d+)">Release #', page)]
    assert listed == [older, newer]  # not their own release, oldest first
    assert 'href="/projects/svc/environments/first"' in page and "dev" in page
    assert "2 CREATE" in page and "1 DELETE (destructive)" in page

    scoped = web("scoped").get("/approvals").text
    assert re.findall(r'<a href="/releases/(\d+)">Release #', scoped) == [str(newer)]
    assert f"Release #{own}" in web("admin").get("/approvals").text  # someone else's for the admin
    for name in ("member", "dev"):
        assert "Nothing is waiting for you." in web(name).get("/approvals").text


def test_the_inbox_list_refreshes_itself_and_answers_204_when_nothing_changed(api, web, new_environment,
                                                                            run_jobs):
    new_environment(WAITS)
    client = web("approver")
    page = client.get("/approvals").text
    url = re.search(r'id="approvals-list" hx-get="([^"]+)" hx-trigger="rg-poll from:body"', page).group(1)
    assert client.get(url, headers=HX).status_code == 204
    release_id = pending(api, run_jobs)
    fragment = client.get(url, headers=HX)
    assert fragment.status_code == 200 and f"Release #{release_id}" in fragment.text
    assert "<html" not in fragment.text


def nav_count(client, url: str = "/fragments/approvals-count") -> tuple[str, str]:
    """The badge inside the navigation count, and the URL its next poll asks."""
    response = client.get(url, headers=HX)
    assert response.status_code == 200
    found = re.fullmatch(r'<span id="approvals-count" hx-get="([^"]+)" hx-trigger="rg-poll from:body" '
                         r'hx-swap="outerHTML">(.*)</span>', response.text, re.S)
    return found.group(2), found.group(1)


def test_the_navigation_count_shows_how_many_wait_and_is_empty_at_zero(api, web, new_environment, run_jobs):
    new_environment(WAITS)
    new_environment(WAITS, name="other")
    approver, member = web("approver"), web("member")
    page = approver.get("/").text
    assert ('<span id="approvals-count" hx-get="/fragments/approvals-count" hx-trigger="load, rg-poll from:body" '
            'hx-swap="outerHTML"></span>') in page  # asked for once the page has loaded
    badge, next_poll = nav_count(approver)
    assert badge == ""
    assert approver.get(next_poll, headers=HX).status_code == 204  # nothing changed since
    pending(api, run_jobs)
    pending(api, run_jobs, path="svc/other")
    badge, _ = nav_count(approver, next_poll)
    assert re.fullmatch(r'<span class="count" title="2 releases waiting for your decision">2</span>', badge)
    assert nav_count(member)[0] == ""
    assert nav_count(web("dev"))[0] == ""  # their own releases


def add_pending(app, environments: int) -> None:
    """Environments of project board until there are `environments`, each with a release written
    straight into the database, waiting for approval (it needs no hook run)."""
    from webapp.models import Project, Release, utcnow

    with app.app_context():
        project = db.session.scalar(sa.select(Project).where(Project.name == "board"))
        if project is None:
            project = Project(name="board", repo="/nowhere")
            db.session.add(project)
        have = db.session.scalar(sa.select(sa.func.count(Environment.id)).where(Environment.project == project))
        for number in range(have, environments):
            environment = Environment(project=project, name=f"env-{number:03d}", release_stream="QA")
            db.session.add(environment)
            db.session.flush()
            db.session.add(Release(project_id=project.id, environment_id=environment.id, resources=[],
                                   state="PENDING_APPROVAL", holds_slot=True, started_at=utcnow(),
                                   pending_since=utcnow()))
        db.session.commit()


def test_the_navigation_count_costs_the_same_queries_for_twenty_waiting_releases_as_for_two(app, web):
    """The count asks whose approval would still count in Python, but in a fixed number of
    queries: never one per release."""
    client = web("approver")
    with app.app_context():
        engine = db.engine

    def count_statements() -> tuple[str, int]:
        statements: list[str] = []
        record = lambda _conn, _cursor, statement, *_: statements.append(statement)  # noqa: E731
        sa.event.listen(engine, "before_cursor_execute", record)
        try:
            badge = nav_count(client)[0]
        finally:
            sa.event.remove(engine, "before_cursor_execute", record)
        return badge, len(statements)

    add_pending(app, 2)
    few = count_statements()
    assert few[0].endswith(">2</span>")
    add_pending(app, 20)
    many = count_statements()
    assert many[0].endswith(">20</span>") and many[1] == few[1]
