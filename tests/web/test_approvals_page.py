"""The pending-approvals inbox and the count in the navigation bar, per persona."""
from __future__ import annotations

import re
from datetime import timedelta

import sqlalchemy as sa

from tests.web.release_page_support import HX, MIXED, WAITS, pending
from webapp.extensions import db
from webapp.models import Environment, Release, User, utcnow

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
    listed = [int(n) for n in re.findall(r'<a href="/releases/(\d+)">Release #', table(page))]
    assert listed == [older, newer]  # not their own release, oldest first
    assert 'href="/projects/svc/environments/first"' in page and "dev" in page
    assert "2 CREATE" in page and "1 DELETE (destructive)" in page
    assert own_section(page) == [own]  # their own, waiting for someone else

    scoped = web("scoped").get("/approvals").text
    assert re.findall(r'<a href="/releases/(\d+)">Release #', table(scoped)) == [str(newer)]
    assert f"Release #{own}" in table(web("admin").get("/approvals").text)  # someone else's for the admin
    member = web("member").get("/approvals").text
    assert "Nothing is waiting for you: 3 releases are waiting for others." in text_of(member)
    assert own_section(member) == [] and "Your releases awaiting review" not in member
    dev = web("dev").get("/approvals").text
    assert "Nothing is waiting for you: 3 releases are waiting for others." in text_of(dev)
    assert own_section(dev) == [older, newer]


def table(page: str) -> str:
    found = re.search(r"<tbody>.*?</tbody>", page, re.S)
    return found.group(0) if found else ""


def own_section(page: str) -> list[int]:
    found = re.search(r'<section class="own-pending".*?</section>', page, re.S)
    return [int(n) for n in re.findall(r'<a href="/releases/(\d+)">Release #', found.group(0))] if found else []


def text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_the_inbox_shows_the_description_age_expiry_and_a_destructive_badge_first(
        app, api, web, new_environment, run_jobs):
    new_environment(WAITS, approval_timeout_hours=52)
    new_environment(WAITS, name="other")
    risky = pending(api, run_jobs, resources=MIXED, description="Drop the old orders table")
    plain = pending(api, run_jobs, path="svc/other")
    with app.app_context():
        db.session.execute(sa.update(Release).where(Release.id == risky).values(
            pending_since=utcnow() - timedelta(minutes=12, seconds=30)))
        db.session.commit()
    page = web("approver").get("/approvals").text
    rows = re.findall(r'<tr class="waiting">(.*?)</tr>', page, re.S)
    first_cells = [re.search(r'<td data-label="Release">(.*?)</td>', row, re.S).group(1) for row in rows]
    assert f"Release #{risky}" in first_cells[0] and "destructive" in text_of(first_cells[0])
    assert "Drop the old orders table" in first_cells[0]
    assert f"Release #{plain}" in first_cells[1] and "destructive" not in text_of(first_cells[1])
    waited = [text_of(re.search(r'<td data-label="Waiting since">(.*?)</td>', row, re.S).group(1)) for row in rows]
    assert waited[0] == "12 min ago · expires in 2 d"  # 52 h from 12 minutes ago
    assert waited[1] == "under a minute ago · never expires"
    assert re.search(r'<time datetime="[0-9T:-]+Z" title="[0-9 :-]+ UTC" data-relative>12 min ago</time>', rows[0])
    changes = text_of(re.search(r'<td data-label="Changes">(.*?)</td>', rows[0], re.S).group(1))
    assert changes.startswith("1 DELETE (destructive) , 1 REPLACE (destructive) , 1 UPDATE_IN_PLACE , 2 CREATE")


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


def test_the_navigation_count_is_drawn_only_for_people_who_can_ever_approve(app, web, people):
    from webapp.accounts import machine_actor
    from webapp.groups import add_member, create_group, grant_to_group

    people.add("grouped")  # holds approve_release only through a group
    with app.app_context():
        actor = machine_actor()
        approvers = create_group(actor, name="approvers")
        grant_to_group(actor, approvers, "approve_release")
        add_member(actor, approvers, db.session.scalar(sa.select(User).where(User.username == "grouped")))
    for persona, shown in (("admin", True), ("approver", True), ("grouped", True), ("member", False),
                           ("dev", False)):
        page = web(persona).get("/").text
        assert ('id="approvals-count"' in page) == shown, persona
        assert 'href="/approvals"' in page  # the inbox itself is for everyone: their own releases wait there
