"""Approval rules: every rule met before a release is approved, who counts for which rule,
one rejection enough, rules nobody could meet failing the release, the digest approved."""
from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from tests.helpers import state, trigger
from webapp import approval_rules
from webapp.extensions import db
from webapp.models import AuditEvent, Decision, Environment, Group, Release, User

HOOK_DIR = "svc/pre_release_hooks"
WAITS = {f"{HOOK_DIR}/pre_release_hook.sh": "echo asking; exit 2\n"}
TWO_RULES = [{"name": "dba", "group": "dba", "approvals": 1}, {"name": "sre", "group": "sre", "approvals": 1}]


@pytest.fixture()
def teams(app, people):
    """Groups dba (dana, gina) and sre (sam); dana, sam and both may approve, gina may not; both
    is in both groups."""
    people.add("dana", "approve_release")
    people.add("sam", "approve_release")
    people.add("both", "approve_release")
    people.add("gina")
    with app.app_context():
        members = {"dba": ("dana", "gina", "both"), "sre": ("sam", "both")}
        for name, usernames in members.items():
            group = Group(name=name)
            group.members = list(db.session.scalars(sa.select(User).where(User.username.in_(usernames))))
            db.session.add(group)
        db.session.commit()


def with_rules(app, rules: list[dict], **settings) -> None:
    with app.app_context():
        environment = db.session.scalar(sa.select(Environment).where(Environment.name == "env"))
        environment.approval_rules = rules
        for name, value in settings.items():
            setattr(environment, name, value)
        db.session.commit()


def pending(api, run_jobs, who: str = "dev") -> int:
    release_id = trigger(api, who)
    run_jobs()
    assert state(api, release_id) == "PENDING_APPROVAL", api("admin").get(f"/api/v1/releases/{release_id}").json
    return release_id


def approve(api, who: str, release_id: int):
    return api(who).post(f"/api/v1/releases/{release_id}/approve", json={"comment": f"{who} says go"})


def stored(app, release_id: int) -> tuple[Release, list[Decision], Release | None]:
    with app.app_context():
        release = db.session.get(Release, release_id)
        decisions = list(db.session.scalars(sa.select(Decision).where(Decision.release_id == release_id)
                                            .order_by(Decision.id)))
        bots = list(db.session.scalars(sa.select(Release).where(Release.parent_release_id == release_id)))
        assert len(bots) <= 1
        db.session.expunge_all()
        return release, decisions, bots[0] if bots else None


@pytest.mark.parametrize("order", [("dana", "sam"), ("sam", "dana")])
def test_two_rules_are_met_in_either_order_and_only_the_last_approval_approves(app, api, teams, new_environment,
                                                                            run_jobs, order):
    new_environment(WAITS)
    with_rules(app, TWO_RULES)
    release_id = pending(api, run_jobs)
    first, second = order
    assert approve(api, first, release_id).status_code == 200
    release, decisions, bot = stored(app, release_id)
    assert release.state == "PENDING_APPROVAL" and release.holds_slot and bot is None
    assert [(d.decision, d.rules) for d in decisions] == [("APPROVE", ["dba" if first == "dana" else "sre"])]
    assert approve(api, second, release_id).status_code == 200
    release, decisions, bot = stored(app, release_id)
    assert release.state == "APPROVED"
    assert sorted(rule for d in decisions for rule in d.rules) == ["dba", "sre"]
    assert bot is not None and bot.kind == "BOT" and bot.holds_slot is (bot.state == "IN_PROGRESS")


def test_a_group_member_without_the_permission_does_not_count(app, api, teams, new_environment, run_jobs):
    new_environment(WAITS)
    with_rules(app, TWO_RULES)
    release_id = pending(api, run_jobs)
    response = approve(api, "gina", release_id)
    assert response.status_code == 403 and "Release Approval/Reject" in response.json["error"]
    _release, decisions, _bot = stored(app, release_id)
    assert decisions == []
    with app.app_context():
        progress = approval_rules.progress(db.session.get(Release, release_id))
        dba = progress.rules[0]
        assert sorted(u.username for u in dba.eligible) == ["both", "dana"]  # gina is not one


def test_one_approver_in_both_groups_meets_both_rules(app, api, teams, new_environment, run_jobs):
    new_environment(WAITS)
    with_rules(app, TWO_RULES)
    release_id = pending(api, run_jobs)
    assert approve(api, "both", release_id).status_code == 200
    release, decisions, bot = stored(app, release_id)
    assert release.state == "APPROVED" and bot is not None
    assert [d.rules for d in decisions] == [["dba", "sre"]]


def test_an_approval_that_counts_for_no_rule_is_refused_with_why(app, api, teams, new_environment, run_jobs):
    new_environment(WAITS)
    with_rules(app, TWO_RULES)
    release_id = pending(api, run_jobs)
    assert approve(api, "dana", release_id).status_code == 200
    again = approve(api, "dana", release_id)
    assert again.status_code == 409 and "approved this release already" in again.json["error"]
    # approver may decide, but is in neither group; dba is met, so only sre's people still count.
    other = approve(api, "approver", release_id)
    assert other.status_code == 409
    assert "sre needs 1 more from group sre" in other.json["error"]
    _release, decisions, _bot = stored(app, release_id)
    assert len(decisions) == 1


def test_a_rule_of_two_needs_two_different_people(app, api, teams, new_environment, run_jobs):
    new_environment(WAITS)
    with_rules(app, [{"name": "dba", "group": "dba", "approvals": 2}])
    release_id = pending(api, run_jobs)
    assert approve(api, "dana", release_id).status_code == 200
    assert stored(app, release_id)[0].state == "PENDING_APPROVAL"
    assert approve(api, "dana", release_id).status_code == 409
    assert approve(api, "both", release_id).status_code == 200
    release, decisions, _bot = stored(app, release_id)
    assert release.state == "APPROVED" and [d.rules for d in decisions] == [["dba"], ["dba"]]


def test_the_triggerer_never_counts_unless_self_approval_is_allowed(app, api, people, teams, new_environment,
                                                                    run_jobs):
    new_environment(WAITS)
    with_rules(app, [{"name": "dba", "group": "dba", "approvals": 1}])
    with app.app_context():
        from webapp.accounts import add_grant

        add_grant(db.session.scalar(sa.select(User).where(User.username == "dana")), "trigger_release")
    release_id = pending(api, run_jobs, who="dana")
    assert approve(api, "dana", release_id).status_code == 403
    with_rules(app, [{"name": "dba", "group": "dba", "approvals": 1}], allow_self_approval=True)
    assert approve(api, "dana", release_id).status_code == 200
    assert stored(app, release_id)[0].state == "APPROVED"


def test_one_rejection_after_an_approval_rejects_and_frees_the_slot(app, api, teams, new_environment, run_jobs):
    new_environment(WAITS)
    with_rules(app, TWO_RULES)
    release_id = pending(api, run_jobs)
    waiting = trigger(api, "dev")
    assert approve(api, "dana", release_id).status_code == 200
    refused = api("approver").post(f"/api/v1/releases/{release_id}/reject", json={})
    assert refused.status_code == 403 and "members of dba, sre" in refused.json["error"]
    assert api("sam").post(f"/api/v1/releases/{release_id}/reject", json={"comment": "no"}).status_code == 200
    release, decisions, bot = stored(app, release_id)
    assert release.state == "REJECTED" and not release.holds_slot and bot is None
    assert [(d.decision, d.user_id is not None) for d in decisions] == [("APPROVE", True), ("REJECT", True)]
    run_jobs()
    assert state(api, waiting) == "PENDING_APPROVAL"  # the queue moved on


def test_rules_nobody_could_meet_fail_the_release_instead_of_holding_the_slot(app, api, teams, new_environment,
                                                                             run_jobs):
    new_environment(WAITS)
    with_rules(app, [{"name": "dba", "group": "dba", "approvals": 3}])  # dba has two who may approve
    release_id = trigger(api, "dev")
    run_jobs()
    release, _decisions, _bot = stored(app, release_id)
    assert release.state == "FAILED" and not release.holds_slot
    assert "needs 3 approvals from group dba, but only 2 such people may approve" in release.error


def test_the_bot_release_carries_the_digest_of_what_was_approved(app, api, teams, new_environment, run_jobs):
    new_environment(WAITS)
    with_rules(app, TWO_RULES)
    release_id = pending(api, run_jobs)
    approve(api, "dana", release_id)
    approve(api, "sam", release_id)
    release, decisions, bot = stored(app, release_id)
    expected = approval_rules.digest(release)
    assert len(expected) == 64 and {d.digest for d in decisions} == {expected}
    assert bot.approval_digest == expected
    # The digest sums up the commit, the hook ref commit, the resources and the hook output.
    for changed in ({"commit": "0" * 40}, {"hook_ref_commit": "1" * 40}, {"resources": []},
                    {"hook_output": "something else\n"}):
        copy = Release(commit=release.commit, hook_ref_commit=release.hook_ref_commit,
                       resources=release.resources, hook_output=release.hook_output)
        for name, value in changed.items():
            setattr(copy, name, value)
        assert approval_rules.digest(copy) != expected, changed


def test_the_default_rule_is_todays_one_approval_from_anyone(app, api, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = pending(api, run_jobs)
    assert approve(api, "approver", release_id).status_code == 200
    release, decisions, bot = stored(app, release_id)
    assert release.state == "APPROVED" and bot is not None
    assert release.approval_rules == [{"name": "default", "group": None, "approvals": 1}]
    assert [d.rules for d in decisions] == [["default"]]


def test_a_pending_release_keeps_the_rules_it_started_waiting_with(app, api, teams, new_environment, run_jobs):
    new_environment(WAITS)
    with_rules(app, TWO_RULES)
    release_id = pending(api, run_jobs)
    with_rules(app, [])  # weakened to the default while it waits: it must not get easier
    assert approve(api, "dana", release_id).status_code == 200
    assert stored(app, release_id)[0].state == "PENDING_APPROVAL"


# -- checking rules and verdicts, without a release ---------------------------------------------

@pytest.mark.parametrize("value, message", [
    ("dba", "must be a list"),
    ([{"name": "Bad Name", "group": None, "approvals": 1}], "name must be lowercase"),
    ([{"name": "a", "approvals": 0}], "from 1 to 10"),
    ([{"name": "a", "approvals": 11}], "from 1 to 10"),
    ([{"name": "a", "approvals": True}], "from 1 to 10"),
    ([{"name": "a", "approvals": "2"}], "from 1 to 10"),
    ([{"name": "a"}, {"name": "a"}], "twice"),
    ([{"name": "a", "owner": "x"}], "unknown field"),
    ([{"name": "a", "group": "nobody"}], "does not exist"),
    ([{"name": "dba\n"}], "name must be lowercase"),
    ([{"name": "a", "group": "dba\n"}], "group must be a group's name"),
])
def test_bad_rules_are_refused_with_a_sentence(app, value, message):
    with app.app_context(), pytest.raises(approval_rules.RuleError, match=message):
        approval_rules.check_rules(value)


def test_an_empty_list_of_rules_is_the_default_rule(app):
    with app.app_context():
        assert approval_rules.check_rules([]) == [{"name": "default", "group": None, "approvals": 1}]


def test_weakenings_name_what_a_change_makes_easier():
    old = [{"name": "dba", "group": "dba", "approvals": 2}, {"name": "sre", "group": "sre", "approvals": 1}]
    assert approval_rules.weakenings(old, old) == []
    assert approval_rules.weakenings(old, old + [{"name": "x", "group": None, "approvals": 1}]) == []
    raised = [{"name": "dba", "group": "dba", "approvals": 3}, old[1]]
    assert approval_rules.weakenings(old, raised) == []
    assert approval_rules.weakenings(old, [old[0]]) == ["approval rule sre removed"]
    assert approval_rules.weakenings(old, [{**old[0], "approvals": 1}, old[1]]) == [
        "approval rule dba lowered from 2 to 1"]
    assert approval_rules.weakenings(old, [{**old[0], "group": None}, old[1]]) == [
        "approval rule dba moved from group dba to anyone who may approve"]
    # Whatever meets the new rules meets the old: no weaker, whatever the names.
    default = approval_rules.default_rules()
    assert approval_rules.weakenings(default, old) == []  # the first setup of group rules
    assert approval_rules.weakenings([{"name": "two", "group": None, "approvals": 2}], old) == []
    assert approval_rules.weakenings(old, [{"name": "db", "group": "dba", "approvals": 2}, old[1]]) == []
    assert approval_rules.weakenings(old, default) == ["approval rule dba removed", "approval rule sre removed"]


def test_a_verdict_adds_rules_and_may_only_raise_a_known_one():
    base = [{"name": "default", "group": None, "approvals": 2}]
    added = [{"name": "default", "group": None, "approvals": 1}, {"name": "dba", "group": None, "approvals": 1}]
    assert approval_rules.merge(base, added) == [{"name": "default", "group": None, "approvals": 2},
                                                  {"name": "dba", "group": None, "approvals": 1}]
    assert approval_rules.merge(base, [{"name": "default", "group": None, "approvals": 5}])[0]["approvals"] == 5
    with pytest.raises(approval_rules.RuleError, match="name the verdict's rule differently"):
        approval_rules.merge(base, [{"name": "default", "group": "dba", "approvals": 5}])


@pytest.mark.parametrize("raw, message", [
    (b"not json", "is not valid JSON"),
    (b"[]", "must be a JSON object"),
    (b'{"reason": 5}', "reason must be a string"),
    (b'{"rules": {"name": "x"}}', "rules must be a list"),
    (b'{"approve": true}', "unknown field"),
    (b'{"rules": [{"name": "x", "approvals": 99}]}', "from 1 to 10"),
    (b"\xff\xfe", "is not valid JSON"),
    (b'{"reason": "' + b"x" * (70 * 1024) + b'"}', "larger than 64 KiB"),
])
def test_a_bad_verdict_is_refused_with_a_sentence(app, raw, message):
    with app.app_context(), pytest.raises(approval_rules.RuleError, match=message):
        approval_rules.parse_verdict(raw)


def test_ten_members_approving_at_once_count_three_and_give_one_bot_release(app, api, people, new_environment,
                                                                          run_jobs):
    names = [f"member{n}" for n in range(10)]
    for name in names:
        people.add(name, "approve_release")
    with app.app_context():
        db.session.add(Group(name="platform", members=list(db.session.scalars(
            sa.select(User).where(User.username.in_(names))))))
        db.session.commit()
    new_environment(WAITS)
    with_rules(app, [{"name": "platform", "group": "platform", "approvals": 3}])
    release_id = pending(api, run_jobs)
    barrier = threading.Barrier(len(names))
    answers = []

    def click(name: str) -> None:
        client = app.test_client()
        barrier.wait()
        response = client.post(f"/api/v1/releases/{release_id}/approve", json={}, headers=people.headers(name))
        answers.append((response.status_code, response.json))

    threads = [threading.Thread(target=click, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(code for code, _ in answers) == [200] * 3 + [409] * 7, answers
    release, decisions, bot = stored(app, release_id)
    assert release.state == "APPROVED" and bot is not None
    assert [d.rules for d in decisions] == [["platform"]] * 3
    with app.app_context():
        moves = db.session.scalars(sa.select(AuditEvent.to_state).where(
            AuditEvent.release_id == release_id, AuditEvent.action == "state")).all()
    assert moves.count("APPROVED") == 1


def test_the_approve_button_says_what_a_click_counts_for(app, api, teams, new_environment, run_jobs):
    new_environment(WAITS)
    release_id = pending(api, run_jobs)
    with app.app_context():
        release = db.session.get(Release, release_id)
        user = db.session.scalar(sa.select(User).where(User.username == "dana"))
        assert approval_rules.progress(release).approve_label(user) == "Approve"  # the default rule alone
        release.approval_rules = [*approval_rules.default_rules(), {"name": "dba", "group": "dba", "approvals": 1}]
        assert approval_rules.progress(release).approve_label(user) == "Approve as default, dba"
        approver = db.session.scalar(sa.select(User).where(User.username == "approver"))
        assert approval_rules.progress(release).approve_label(approver) == "Approve (default rule)"
        release.approval_rules = TWO_RULES
        both = db.session.scalar(sa.select(User).where(User.username == "both"))
        assert approval_rules.progress(release).approve_label(both) == "Approve as dba, sre"
        db.session.rollback()


def test_a_rule_that_can_no_longer_be_met_lets_anyone_who_may_decide_reject(app, api, teams, new_environment,
                                                                           run_jobs):
    new_environment(WAITS)
    with_rules(app, [{"name": "dba", "group": "dba", "approvals": 1}])
    release_id = pending(api, run_jobs)
    assert api("approver").post(f"/api/v1/releases/{release_id}/reject", json={}).status_code == 403
    with app.app_context():  # every DBA who may approve leaves the group while it waits
        dba = db.session.scalar(sa.select(Group).where(Group.name == "dba"))
        dba.members = [member for member in dba.members if member.username == "gina"]
        db.session.commit()
        assert approval_rules.progress(db.session.get(Release, release_id)).unreachable
    assert api("approver").post(f"/api/v1/releases/{release_id}/reject", json={}).status_code == 200
    assert stored(app, release_id)[0].state == "REJECTED"


def test_an_approval_stops_counting_once_its_giver_may_no_longer_give_it(app, api, teams, new_environment,
                                                                         run_jobs):
    new_environment(WAITS)
    with_rules(app, TWO_RULES)
    release_id = pending(api, run_jobs)
    assert approve(api, "dana", release_id).status_code == 200  # dba met
    with app.app_context():  # dana leaves dba while the release waits
        dba = db.session.scalar(sa.select(Group).where(Group.name == "dba"))
        dba.members = [member for member in dba.members if member.username != "dana"]
        db.session.commit()
    assert approve(api, "sam", release_id).status_code == 200  # sre met; dba is not any more
    release, _decisions, bot = stored(app, release_id)
    assert release.state == "PENDING_APPROVAL" and bot is None
    with app.app_context():
        progress = approval_rules.progress(db.session.get(Release, release_id))
        assert [(rule.name, rule.approved_by) for rule in progress.rules] == [("dba", []), ("sre", ["sam"])]
    assert approve(api, "both", release_id).status_code == 200
    assert stored(app, release_id)[0].state == "APPROVED"


def test_an_approval_counts_for_every_rule_of_its_givers_groups_even_one_met_already(app, api, teams,
                                                                                     new_environment, run_jobs):
    """The issue: "An approver's approval counts for every rule whose group they belong to". So
    when the approval that met a rule stops counting, another approval from that rule's group
    still meets it, though the rule was met already when it was given."""
    new_environment(WAITS)
    with_rules(app, [{"name": "dba", "group": "dba", "approvals": 1}, {"name": "sre", "group": "sre", "approvals": 2}])
    release_id = pending(api, run_jobs)
    assert approve(api, "dana", release_id).status_code == 200  # dba met
    assert approve(api, "both", release_id).status_code == 200  # in dba and sre: sre 1 of 2
    _release, decisions, _bot = stored(app, release_id)
    assert [d.rules for d in decisions] == [["dba"], ["dba", "sre"]]
    with app.app_context():  # dana leaves dba while the release waits: her approval counts no more
        dba = db.session.scalar(sa.select(Group).where(Group.name == "dba"))
        dba.members = [member for member in dba.members if member.username != "dana"]
        db.session.commit()
        progress = approval_rules.progress(db.session.get(Release, release_id))
        assert [(rule.name, rule.approved_by, rule.met) for rule in progress.rules] == [
            ("dba", ["both"], True), ("sre", ["both"], False)]
        assert not progress.unreachable
    assert approve(api, "sam", release_id).status_code == 200  # the second SRE: every rule met
    release, _decisions, bot = stored(app, release_id)
    assert release.state == "APPROVED" and bot is not None
