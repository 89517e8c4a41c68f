"""The dashboard: every environment by project with its live queue and last finished release,
its fragment answering 204 until something changes and reading only live releases, its cost in
SQL statements, and its cards updating live in a real browser.

The environment page is in test_environment_page.py; the settings and variables forms in
test_environment_settings.py.
"""
from __future__ import annotations

import re
from datetime import timedelta

import sqlalchemy as sa

from tests.helpers import state, trigger
from tests.web.pages_support import (
    HTMX,
    MIXED_CHANGES,
    PLAIN,
    WAITS,
    add_finished_releases,
    loaded_releases,
    pending_with_queue,
    release_links,
    statements,
    touches_releases,
    version_in,
)
from webapp.extensions import db
from webapp.models import Environment, Project, Release, User, utcnow

# -- dashboard ----------------------------------------------------------------------------------

def test_the_dashboard_shows_every_environment_by_project_with_stream_mode_queue_and_waiting_mark(
        app, api, web, new_environment, run_jobs):
    new_environment(WAITS)
    new_environment(PLAIN, name="qa", release_stream="QA-STREAM", approval_workflow=False)
    new_environment(PLAIN, project="web", name="preview", release_stream="PREVIEW", approval_workflow=False,
                    parallel_releases=True)
    first, second, third = pending_with_queue(api, run_jobs)
    for persona in ("admin", "member"):
        page = web(persona).get("/")
        assert page.status_code == 200
        text = page.text
        for shown in ("svc", "web", ">env<", ">qa<", ">preview<", "QA-STREAM", "PREVIEW",
                      "Approval workflow", "Serial", "Parallel releases"):
            assert shown in text, shown
        assert 'href="/projects/svc/environments/env"' in text
        assert list(dict.fromkeys(release_links(text))) == [first, second, third]
        waiting = re.search(r'<li class="waiting">(.*?)</li>', text, re.S).group(1)
        assert f'href="/releases/{first}"' in waiting and "Waiting for approval" in waiting
        # The admin may decide it (dev triggered it), so a Review button leads there; the member may not.
        assert (f'href="/releases/{first}" aria-label="Review release {first}">Review</a>' in waiting) == (
            persona == "admin")
        queue = re.search(r'<ol class="release-list queue">(.*?)</ol>', text, re.S).group(1)
        assert re.search(rf'#1</span>\s*<a href="/releases/{second}"', queue)
        assert re.search(rf'#2</span>\s*<a href="/releases/{third}"', queue)
        assert " style=" not in text and "<script>" not in text and "hx-on" not in text


def test_an_empty_dashboard_says_who_creates_projects(app, web, people):
    admin_page = web("admin").get("/").text
    assert "No projects yet" in admin_page and 'href="/admin/"' in admin_page
    member_page = web("member").get("/").text
    assert "No projects yet" in member_page and "created by admins" in member_page and "in Admin" in member_page


def test_anonymous_visitors_are_sent_to_sign_in_from_the_dashboard_and_its_fragment(app, people):
    client = app.test_client()
    page = client.get("/")
    assert page.status_code == 302 and "/sign-in" in page.location
    fragment = client.get("/fragments/dashboard?v=0", headers=HTMX)
    assert fragment.status_code == 401 and fragment.headers["HX-Redirect"].startswith("/sign-in")
    assert "<html" not in fragment.text


def test_the_dashboard_fragment_answers_204_until_something_changes(app, api, web, new_environment):
    new_environment(PLAIN, approval_workflow=False, wait_for_external_finish=True)
    for persona in ("dev", "member"):
        client = web(persona)
        version = version_in(client.get("/").text, "/fragments/dashboard")
        unchanged = client.get(f"/fragments/dashboard?v={version}", headers=HTMX)
        assert unchanged.status_code == 204 and unchanged.data == b""
        release_id = trigger(api)
        changed = client.get(f"/fragments/dashboard?v={version}", headers=HTMX)
        assert changed.status_code == 200 and "<html" not in changed.text
        assert changed.text.lstrip().startswith('<div id="dashboard"')
        assert 'hx-trigger="rg-poll from:body"' in changed.text and 'hx-swap="outerHTML"' in changed.text
        assert f'href="/releases/{release_id}"' in changed.text
        new_version = version_in(changed.text, "/fragments/dashboard")
        assert new_version != version
        assert client.get(f"/fragments/dashboard?v={new_version}", headers=HTMX).status_code == 204


def test_an_unchanged_dashboard_fragment_reads_no_releases(app, api, web, new_environment):
    new_environment(PLAIN, approval_workflow=False, wait_for_external_finish=True)
    trigger(api)
    client = web("member")
    version = version_in(client.get("/").text, "/fragments/dashboard")
    with statements(app) as seen:
        response = client.get(f"/fragments/dashboard?v={version}", headers=HTMX)
    assert response.status_code == 204
    assert [sql for sql in seen if touches_releases(sql)] == []
    queries = [sql for sql in seen if sql not in ("BEGIN", "COMMIT", "ROLLBACK")]
    assert len(queries) == 1 and "FROM users" in queries[0]  # only flask-login's lookup of the user


def test_a_changed_dashboard_fragment_loads_only_live_releases_and_the_last_finished_never_the_history(
        app, api, web, new_environment):
    new_environment(PLAIN, approval_workflow=False, wait_for_external_finish=True)
    finished = add_finished_releases(app, ["SUCCEEDED"] * 120 + ["FAILED"] * 30)
    live = trigger(api)
    client = web("member")
    with statements(app) as seen, loaded_releases() as loaded:
        response = client.get("/fragments/dashboard?v=stale", headers=HTMX)
    assert response.status_code == 200 and release_links(response.text) == [live, finished[-1]]
    assert loaded == []  # plain rows, no Release objects
    on_releases = [sql for sql in seen if touches_releases(sql)]
    assert len(on_releases) == 1 and "state IN" in on_releases[0]



def card(text: str, name: str = "env") -> str:
    """One environment card of the dashboard, as plain text (tags dropped, spaces collapsed)."""
    tile = re.search(rf'<article class="environment-tile" aria-labelledby="environment-svc-{name}">(.*?)</article>',
                     text, re.S).group(1)
    text = " ".join(re.sub(r"<[^>]+>", " ", tile).split())
    return text.replace("( ", "(").replace(" )", ")")


def test_an_idle_card_shows_the_last_finished_release_with_its_outcome_age_triggerer_and_commit(
        app, web, new_environment):
    new_environment(PLAIN)
    new_environment(PLAIN, name="qa")
    with app.app_context():
        approver = db.session.scalar(sa.select(User.id).where(User.username == "approver"))
    succeeded, rejected = add_finished_releases(app, ["SUCCEEDED", "REJECTED"])
    failed, = add_finished_releases(app, ["TIMED_OUT"], name="qa")
    with app.app_context():
        db.session.execute(sa.update(Release).where(Release.id == succeeded).values(
            triggered_by_id=approver, commit="abc1234def5678", description="Add the note column",
            finished_at=utcnow() - timedelta(days=3, minutes=5)))
        db.session.commit()
    page = web("member").get("/").text
    prod = card(page)
    assert "Nothing running." in prod
    assert (f"Last finished ✓ #{succeeded} succeeded 3 d ago by approver, commit abc1234 — Add the note column"
            in prod)
    assert f"#{rejected}" not in prod  # a rejected release changed nothing
    assert 'title="abc1234def5678">abc1234</code>' in page
    assert f"✗ #{failed} timed out under a minute ago by a removed user" in card(page, "qa")


def test_an_active_release_shows_its_description_a_destructive_badge_and_review_for_who_may_decide(
        app, api, web, new_environment, run_jobs):
    new_environment(WAITS)
    new_environment(WAITS, name="qa")
    risky = trigger(api, resources=MIXED_CHANGES, description="Drop the old orders table")
    safe = trigger(api, path="svc/qa", description="Only adds things")
    run_jobs()
    assert state(api, risky) == state(api, safe) == "PENDING_APPROVAL"
    for persona, reviews in (("approver", True), ("admin", True), ("member", False), ("dev", False)):
        page = web(persona).get("/").text
        prod, qa = card(page), card(page, "qa")
        assert "Drop the old orders table" in prod and "Only adds things" in qa
        assert "destructive" in prod and "destructive" not in qa
        assert ("Review" in prod.split()) == reviews, persona  # dev triggered them, the member may not decide
        assert (f'href="/releases/{risky}" aria-label="Review release {risky}">Review</a>' in page) == reviews


def test_a_bot_release_shows_as_its_original_with_the_original_triggerer_and_who_approved(
        app, api, web, new_environment, run_jobs):
    new_environment(WAITS)
    original = trigger(api, description="Roll out the new checkout")
    run_jobs()
    response = api("approver").post(f"/api/v1/releases/{original}/approve", json={})
    bot = response.json["bot_release_id"]
    page = web("member").get("/").text
    prod = card(page)
    assert f"Release {original} · applying (bot #{bot})" in prod
    assert "by dev, approved by approver" in prod and "Roll out the new checkout" in prod
    assert f'href="/releases/{original}">Release {original}</a>' in page and f'href="/releases/{bot}"' in page
    run_jobs()  # the bot release runs to its end
    outcome = state(api, bot)
    prod = card(web("member").get("/").text)
    assert "Nothing running." in prod
    assert re.search(rf"[✓✗] #{original} \(bot #{bot}\) {outcome.lower().replace('_', ' ')} .* by dev", prod), prod


def add_board(app, environments: int, per_project: int = 10) -> None:
    """Projects of `per_project` environments until there are `environments` of them, each busy:
    a release waiting for approval that holds the slot, two queued behind it, one finished."""
    with app.app_context():
        have = db.session.scalar(sa.select(sa.func.count(Environment.id)))
        users = db.session.scalars(sa.select(User.id).order_by(User.id)).all()
        for number in range(have, environments):
            project_name = f"board-{number // per_project:03d}"
            project = db.session.scalar(sa.select(Project).where(Project.name == project_name))
            if project is None:
                project = Project(name=project_name, repo="/nowhere")
                db.session.add(project)
            environment = Environment(project=project, name=f"env-{number:03d}", release_stream="QA",
                                      approval_workflow=number % 3 != 2, parallel_releases=number % 3 == 2)
            db.session.add(environment)
            db.session.flush()
            who = users[number % len(users)]
            db.session.add_all([
                Release(project_id=project.id, environment_id=environment.id, resources=[], triggered_by_id=who,
                        state="PENDING_APPROVAL", holds_slot=True, started_at=utcnow(), pending_since=utcnow()),
                Release(project_id=project.id, environment_id=environment.id, resources=[], triggered_by_id=who),
                Release(project_id=project.id, environment_id=environment.id, resources=[], kind="BOT"),
                Release(project_id=project.id, environment_id=environment.id, resources=[], state="SUCCEEDED",
                        finished_at=utcnow()),
            ])
        db.session.commit()


def dashboard_statements(app, client) -> tuple[int, int]:
    """SQL statements sent for the dashboard page, and for its fragment drawn again."""
    counts = []
    for url in ("/", "/fragments/dashboard?v=stale"):
        with statements(app) as seen:
            response = client.get(url, headers=HTMX if "fragments" in url else {})
        assert response.status_code == 200
        counts.append(len(seen))
    return counts[0], counts[1]


def test_the_dashboard_costs_the_same_sql_statements_for_200_environments_as_for_20(app, web, people):
    """No query per card: the page and its fragment read every environment and every live release
    in a fixed number of statements, whoever asks."""
    with app.app_context():  # a project without environments says what the viewer may do
        db.session.add(Project(name="empty", repo="/nowhere"))
        db.session.commit()
    add_board(app, 20)
    clients = {persona: web(persona) for persona in ("member", "admin")}
    small = {}
    for persona, client in clients.items():
        dashboard_statements(app, client)  # a first request may set up what later ones reuse
        small[persona] = dashboard_statements(app, client)
        assert len(set(release_links(client.get("/").text))) == 20 * 4  # the last finished one too
    add_board(app, 200)
    for persona, client in clients.items():
        page = client.get("/").text
        assert len(set(release_links(page))) == 200 * 4 and page.count('class="environment-tile"') == 200
        assert dashboard_statements(app, client) == small[persona], persona


# -- in a real browser ---------------------------------------------------------------------------

def test_the_dashboard_updates_live_in_a_browser_without_reloading(page_as, api, new_environment):
    from playwright.sync_api import expect

    new_environment(WAITS)
    page = page_as("member")
    expect(page.get_by_role("link", name="env")).to_be_visible()
    page.evaluate("window.notReloaded = true")
    first = trigger(api)
    expect(page.locator("li.waiting")).to_contain_text("Waiting for approval")
    expect(page.locator("li.waiting").get_by_role("link", name=f"Release {first}")).to_be_visible()
    second = trigger(api)
    expect(page.locator("ol.queue li").first).to_contain_text(f"#1 Release {second}")
    assert page.evaluate("window.notReloaded") is True
    page.get_by_role("link", name="env").click()
    expect(page.get_by_role("heading", name="svc / env")).to_be_visible()


def test_in_a_browser_a_reviewer_goes_from_the_card_to_the_release_and_sees_what_ran_last(
        page_as, api, new_environment):
    from playwright.sync_api import expect

    from tests.helpers import wait_for

    new_environment(WAITS)
    release_id = trigger(api, resources=MIXED_CHANGES, description="Drop the old orders table")
    wait_for(lambda: state(api, release_id) == "PENDING_APPROVAL")
    page = page_as("approver", viewport={"width": 390, "height": 844})
    card = page.locator("article.environment-tile").first
    expect(card.locator("li.waiting")).to_contain_text("Drop the old orders table")
    expect(card.locator(".destructive-badge")).to_be_visible()
    review = card.get_by_role("link", name=f"Review release {release_id}")
    expect(review).to_be_visible()
    box = review.bounding_box()
    assert box["height"] >= 44 and box["x"] >= 0 and box["x"] + box["width"] <= 390  # a thumb's target, on screen
    expect(card.locator(".last-finished, .empty").last).to_contain_text("No release has finished here yet.")
    review.click()
    expect(page.locator("#release-panel .state")).to_have_text("Pending approval")
    assert api("approver").post(f"/api/v1/releases/{release_id}/reject", json={"comment": "no"}).status_code == 200
    page.goto("/")
    expect(page.locator("article.environment-tile").first).to_contain_text("Nothing running.")
