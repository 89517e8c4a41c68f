"""approval_rules.progress_of, which the dashboard, the inbox and the navigation count use to read
many pending releases at once, says exactly what progress() says of each."""
from __future__ import annotations

import sqlalchemy as sa

from tests.helpers import state, trigger
from tests.rules_support import set_rules
from webapp import approval_rules
from webapp.extensions import db
from webapp.models import Release, User

WAITS = {"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"}


def test_progress_of_many_releases_agrees_with_progress_of_each(app, api, people, new_environment, run_jobs):
    new_environment(WAITS)
    new_environment(WAITS, name="mine", allow_self_approval=True)
    new_environment(WAITS, name="plain")
    for name in ("alice", "bob", "carol"):
        people.add(name, "approve_release")
    rules = [{"name": "sre", "group": "sre", "approvals": 1}, {"name": "dba", "group": "dba", "approvals": 2},
             {"name": "anyone", "group": None, "approvals": 1}]
    set_rules(app, rules, {"sre": ["alice"], "dba": ["bob", "carol", "approver"]})
    set_rules(app, rules, environment="mine")
    ids = [trigger(api, "approver", path=path) for path in ("svc/env", "svc/mine", "svc/plain")]
    run_jobs()
    assert {state(api, release_id) for release_id in ids} == {"PENDING_APPROVAL"}
    assert api("bob").post(f"/api/v1/releases/{ids[0]}/approve", json={}).status_code == 200
    assert api("alice").post(f"/api/v1/releases/{ids[1]}/approve", json={}).status_code == 200

    with app.app_context():
        found = db.session.scalars(sa.select(Release).where(Release.id.in_(ids)).order_by(Release.id)).all()
        users = db.session.scalars(sa.select(User).order_by(User.username)).all()
        many = approval_rules.progress_of(found)
        assert sorted(many) == ids
        for release in found:
            one = approval_rules.progress(release)
            assert many[release.id].summary() == one.summary()
            assert many[release.id].as_json() == one.as_json()
            for user in users:
                assert many[release.id].counts_for(user) == one.counts_for(user), (release.id, user.username)
        # the triggerer counts only where self-approval is allowed
        approver = next(u for u in users if u.username == "approver")
        assert many[ids[0]].counts_for(approver) == [] and many[ids[1]].counts_for(approver) == ["dba"]
        assert many[ids[0]].summary() == ("1 of 3 rules met \u2014 sre: waiting (needs 1 of 1 member), "
                                          "dba: waiting (approved by bob; needs 1 more of 2 members), "
                                          "anyone: approved by bob")
    assert approval_rules.progress_of([]) == {}
