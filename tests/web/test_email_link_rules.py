"""Email links under approval rules: a link counts for its rules, or says why it would not;
an author's link refused once authors may not approve.
"""
from __future__ import annotations

import re

import sqlalchemy as sa

from tests.helpers import trigger
from tests.notify_support import links, path
from tests.web.email_link_support import (
    WAITS,
    app_config,  # noqa: F401 - a fixture, used by name
    assert_refused,
    decide,
    mailed,  # noqa: F401 - a fixture, used by name
    ruled,  # noqa: F401 - a fixture, used by name
)

# -- approval rules: a link counts for its rules, or says why it would not ------------------------------


def text_of(page: str) -> str:
    import html

    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def test_the_confirmation_page_opens_with_the_reason_and_says_what_the_approval_counts_for(web, ruled):
    from tests.rules_support import REASON, WAITING_FOR_BOTH

    page = web("bob").get(ruled.link("bob"))
    assert page.status_code == 200
    shown = text_of(page.text[page.text.index('<section class="card email-confirm">'):])
    assert shown.startswith(f"Why this release needs approval: {REASON} Approve release #{ruled.id} of svc/env?")
    assert f"Approval {WAITING_FOR_BOTH}" in shown
    assert f">Approve release #{ruled.id} as dba</button>" in page.text


def test_two_approve_links_meet_two_rules_one_each(api, web, ruled):
    from tests.rules_support import SRE_MET

    first = decide(web("alice"), ruled.link("alice"), "sre agrees")
    assert first.status_code == 200
    shown = text_of(first.text)
    assert f"Your approval of release #{ruled.id} of svc/env counted for sre." in shown
    assert f"Release #{ruled.id} waits for more approvals" in shown and f"Pending approval : {SRE_MET}." in shown
    assert api("member").get(f"/api/v1/releases/{ruled.id}").json["state"] == "PENDING_APPROVAL"

    second = decide(web("carol"), ruled.link("carol"), "dba agrees")
    assert second.status_code == 200
    release = api("member").get(f"/api/v1/releases/{ruled.id}").json
    assert release["state"] == "APPROVED"
    assert f"Bot release #{release['bot_release_id']} is applying the approved changes." in text_of(second.text)
    assert [(d["by"], d["rules"], d["via"], d["comment"]) for d in release["decisions"]] == [
        ("alice", ["sre"], "email", "sre agrees"), ("carol", ["dba"], "email", "dba agrees")]


def test_a_link_of_someone_whose_approval_no_longer_counts_says_why_and_stays_unused(app, api, web, ruled):
    assert api("alice").post(f"/api/v1/releases/{ruled.id}/approve", json={}).status_code == 200
    assert_refused(app, web("alice"), ruled.link("alice"), "not_counting", 409,
                   "You approved this release already; the rules still unmet need other people.")
    assert api("bob").post(f"/api/v1/releases/{ruled.id}/approve", json={}).status_code == 200  # the last rule
    assert_refused(app, web("carol"), ruled.link("carol"), "decided", 409, "no longer waiting")


def test_a_link_whose_rule_someone_else_met_says_what_is_still_needed(app, api, web, ruled):
    assert api("bob").post(f"/api/v1/releases/{ruled.id}/approve", json={}).status_code == 200
    # carol's link stays unused (assert_refused compares every link's use before and after)
    assert_refused(app, web("carol"), ruled.link("carol"), "not_counting", 409,
                   "Your approval would count for no rule still unmet (sre needs 1 more from group sre)")
    assert api("member").get(f"/api/v1/releases/{ruled.id}").json["state"] == "PENDING_APPROVAL"


def test_links_of_someone_taken_out_of_the_rules_group_no_longer_approve_or_reject(app, web, ruled):
    from webapp.extensions import db
    from webapp.models import Group

    with app.app_context():
        dba = db.session.scalar(sa.select(Group).where(Group.name == "dba"))
        dba.members = [member for member in dba.members if member.username != "carol"]
        db.session.commit()
    carol = web("carol")
    assert_refused(app, carol, ruled.link("carol"), "not_counting", 409, "Your approval would count for no rule")
    assert_refused(app, carol, ruled.link("carol", "Reject"), "not_allowed", 403,
                   "Only someone who could approve for one of its rules may reject this release (members of dba, sre)",
                   action="reject")


def test_an_author_is_refused_by_their_link_once_authors_may_not_approve_is_turned_on(
        app, api, web, people, new_environment, run_jobs, run_notify_jobs, smtp_server):
    from tests.helpers import git

    people.add("alice", "approve_release")  # alice@example.com
    repo = new_environment(WAITS)
    first = trigger(api, "dev")
    run_jobs()
    assert api("approver").post(f"/api/v1/releases/{first}/approve", json={}).status_code == 200
    run_jobs()
    (repo / "app.py").write_text("x = 1\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Change the app", "--author=Alice <alice@example.com>")
    sha = git(repo, "rev-parse", "HEAD")
    second = trigger(api, "dev", ref=sha)
    run_jobs()
    run_notify_jobs()  # mailed to alice too: authors may approve, so far
    [message] = [m for m in smtp_server.inbox.to("alice@example.com") if f"#{second}" in m["Subject"]]
    link = path(links(message)["Approve"])
    settings = api("admin").patch("/api/v1/projects/svc/environments/env", json={"authors_may_not_approve": True})
    assert settings.status_code == 200, settings.json
    assert_refused(app, web("alice"), link, "not_allowed", 403,
                   f"You wrote or committed {sha[:12]} (\u201cChange the app\u201d), which is part of this release")
    assert api("member").get(f"/api/v1/releases/{second}").json["state"] == "PENDING_APPROVAL"

