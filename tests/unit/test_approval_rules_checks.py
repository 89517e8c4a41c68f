"""Approval rules asked directly (webapp.approval_rules): each refusal of bad rules read whole, in
the name of what was checked; the groups that do not exist; how a rule's progress is told (its
phrase, the summary, the JSON), whose approval counts for what, the Approve button's words; why
rules could never be met; and the digest of what an approval approves, fixed across versions."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.helpers import trigger
from tests.rules_support import set_rules
from webapp import approval_rules, permissions
from webapp.approval_rules import Progress, RuleError, RuleProgress, check_rules
from webapp.extensions import db
from webapp.models import Decision, Release, User

RULE_NAME = ("lowercase letters, digits, '-' and '_', starting with a letter or digit, at most 63 characters")


def _refusal(value, **what) -> str:
    with pytest.raises(RuleError) as refused:
        check_rules(value, **what)
    return str(refused.value)


def test_bad_rules_are_refused_in_the_name_of_what_was_checked_with_the_whole_sentence(app):
    with app.app_context():
        assert _refusal("dba") == ('approval_rules must be a list of rules like '
                                   '[{"name": "dba", "group": "dba", "approvals": 1}].')
        assert _refusal([{"name": f"r{n}"} for n in range(21)], what="the verdict's rules") == (
            "the verdict's rules holds 21 rules; at most 20 are allowed.")
        assert _refusal(["dba"]) == (
            'approval_rules[0] must be an object like {"name": "dba", "group": "dba", "approvals": 1}.')
        assert _refusal([{"name": "a"}, {"name": "b", "zeta": 1, "owner": 2}]) == (
            "approval_rules[1] has the unknown field \u201cowner\u201d; a rule has name, group and approvals.")
        assert _refusal([{"name": "Bad"}]) == f"approval_rules[0]: name must be {RULE_NAME}."
        assert _refusal([{"group": "dba"}]) == f"approval_rules[0]: name must be {RULE_NAME}."
        assert _refusal([{"name": "a", "group": "Ops"}]) == (
            "approval_rules[0]: group must be a group's name, or null for anyone who may approve.")
        assert _refusal([{"name": "a", "group": 5}]) == (
            "approval_rules[0]: group must be a group's name, or null for anyone who may approve.")
        for approvals in (0, 11, True, "2", None):
            assert _refusal([{"name": "a", "approvals": approvals}]) == (
                "approval_rules[0]: approvals must be a whole number from 1 to 10.")
        assert _refusal([{"name": "b"}, {"name": "z"}, {"name": "z"}, {"name": "b"}]) == (
            "approval_rules names the rule \u201cb\u201d twice; give each rule its own name.")
        assert _refusal([{"name": "a", "group": "zz"}, {"name": "b", "group": "ghost"}]) == (
            "approval_rules names the group \u201cghost\u201d, which does not exist; create it first "
            "(Admin \u2192 Groups) or name another.")


def test_good_rules_are_read_as_they_are_with_one_approval_unless_said(app):
    with app.app_context():
        assert check_rules(None) == check_rules([]) == [{"name": "default", "group": None, "approvals": 1}]
        twenty = [{"name": f"r{n}", "group": None, "approvals": 10 if n else 1} for n in range(20)]
        assert check_rules(twenty) == twenty
        assert check_rules([{"name": "anyone"}]) == [{"name": "anyone", "group": None, "approvals": 1}]


def test_the_groups_rules_name_that_do_not_exist_are_told_in_order(app, api, people, new_environment):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"})
    set_rules(app, [], {"dba": ["approver"]})
    with app.app_context():
        rules = [{"name": "a", "group": "zz"}, {"name": "b", "group": "dba"}, {"name": "c", "group": None},
                 {"name": "d", "group": "ghost"}, {"name": "e", "group": "zz"}]
        assert approval_rules.missing_groups(rules) == ["ghost", "zz"]
        assert approval_rules.missing_groups([{"name": "b", "group": "dba"}]) == []


def _people(*names: str) -> list[User]:
    return [User(id=number, username=name) for number, name in enumerate(names, start=1)]


def test_a_rules_progress_is_told_in_words_and_in_json():
    alice, bob, carol = _people("alice", "bob", "carol")
    met = RuleProgress("sre", "sre", 2, ["alice", "bob"], [alice, bob])
    half = RuleProgress("dba", "dba", 2, ["bob"], [bob, carol])
    none = RuleProgress("qa", "qa", 1, [], [carol])
    nobody = RuleProgress("ops", "ops", 1, [], [])
    anyone = RuleProgress("default", None, 2, [], [alice, bob, carol])
    assert [rule.phrase() for rule in (met, half, none, nobody, anyone)] == [
        "sre: approved by alice, bob", "dba: waiting (approved by bob; needs 1 more of 2 members)",
        "qa: waiting (needs 1 of 1 member)", "ops: waiting (needs 1 of 0 members)",
        "default: waiting (needs 2 of 3 who may approve)"]
    assert [rule.needed for rule in (met, half, none, anyone)] == [0, 1, 1, 2]
    assert half.as_json() == {"name": "dba", "group": "dba", "approvals": 2, "approved_by": ["bob"], "met": False}
    assert Progress([met], "why", {1, 2}).summary() == "1 of 1 rule met \u2014 sre: approved by alice, bob"
    both = Progress([met, half], "the reason", {1, 2})
    assert both.summary() == ("1 of 2 rules met \u2014 sre: approved by alice, bob, "
                              "dba: waiting (approved by bob; needs 1 more of 2 members)")
    assert both.as_json() == {"rules": [met.as_json(), half.as_json()], "reason": "the reason", "met": False}
    assert Progress([met], None, {1, 2}).as_json()["met"] is True


def test_whose_approval_counts_for_what_and_what_the_button_says():
    alice, bob, carol, dana = _people("alice", "bob", "carol", "dana")
    sre = RuleProgress("sre", "sre", 1, ["alice"], [alice, bob])
    dba = RuleProgress("dba", "dba", 2, [], [dana, bob, carol])
    progress = Progress([sre, dba], None, {alice.id})
    assert [progress.counts_for(user) for user in (alice, bob, carol, None)] == [[], ["dba"], ["dba"], []]
    assert progress.counted_for(bob) == ["sre", "dba"] and progress.counted_for(None) == []
    assert progress.counted_for(alice) == ["sre"]  # met already, and still hers
    assert [u.username for u in progress.still_counting()] == ["bob", "carol", "dana"]  # by name, not who asked first
    assert [progress.approve_label(user) for user in (bob, alice)] == ["Approve as dba", "Approve"]
    assert Progress([RuleProgress("sre", "sre", 1, [], [bob]), RuleProgress("dba", "dba", 1, [], [bob])],
                    None, set()).approve_label(bob) == "Approve as sre, dba"
    added = Progress([RuleProgress("default", None, 1, [], [bob]), RuleProgress("sec", "sec", 1, [], [carol])],
                     None, set())
    assert added.approve_label(bob) == "Approve (default rule)" and added.approve_label(carol) == "Approve as sec"
    only = Progress([RuleProgress("default", None, 1, [], [bob])], None, set())
    assert only.approve_label(bob) == "Approve"
    grouped = Progress([RuleProgress("default", "ops", 1, [], [bob])], None, set())
    assert grouped.approve_label(bob) == "Approve (default rule)"  # a rule named so, though not anyone's


def test_the_release_keeps_its_rules_and_a_deleted_giver_is_named_so():
    assert approval_rules.rules_of(Release(approval_rules=None)) == [{"name": "default", "group": None,
                                                                        "approvals": 1}]
    rules = [{"name": "dba", "group": "dba", "approvals": 2}]
    assert approval_rules.rules_of(Release(approval_rules=rules)) == rules
    assert approval_rules._name(Decision(user=None)) == "a deleted user"
    assert approval_rules._name(Decision(user=User(username="bob"))) == "bob"


def test_rules_that_could_never_be_met_say_which_and_why(app, api, people, new_environment):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"})
    for name in ("alice", "bob"):
        people.add(name, "approve_release")
    set_rules(app, [], {"dba": ["bob"], "empty": []})
    release_id = trigger(api, "approver")  # who may decide: admin, alice, bob (not the triggerer)
    with app.app_context():
        release = db.session.get(Release, release_id)
        infeasible = approval_rules.infeasible
        assert infeasible(release, [{"name": "all", "group": None, "approvals": 3},
                                    {"name": "dba", "group": "dba", "approvals": 1}]) is None
        assert infeasible(release, [{"name": "x", "group": "ghost", "approvals": 1}]) == (
            "The approval rules name the group \u201cghost\u201d, which does not exist, so nobody could approve "
            "this release; create the group or change the rules, then trigger it again.")
        grant = "may approve this release; grant Release Approval/Reject to more people or ask for fewer."
        assert infeasible(release, [{"name": "all", "group": None, "approvals": 4}]) == (
            "The approval rule \u201call\u201d needs 4 approvals from anyone who may approve, but only 3 such "
            f"people {grant}")
        assert infeasible(release, [{"name": "all", "group": None, "approvals": 1},
                                    {"name": "dba", "group": "dba", "approvals": 2}]) == (
            f"The approval rule \u201cdba\u201d needs 2 approvals from group dba, but only 1 such person {grant}")
        assert infeasible(release, [{"name": "e", "group": "empty", "approvals": 1}]) == (
            f"The approval rule \u201ce\u201d needs 1 approval from group empty, but only 0 such people {grant}")


def test_who_may_decide_is_every_active_approver_by_name_and_a_deactivated_one_counts_for_no_rule(
        app, api, people, new_environment):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 2\n"})
    for name in ("zoe", "bob", "carl"):  # created out of order: the list is by name, not by row
        people.add(name, "approve_release")
    release_id = trigger(api, "approver")
    with app.app_context():
        db.session.execute(sa.update(User).where(User.username == "carl").values(active=False))  # the grant kept
        release = db.session.get(Release, release_id)
        assert [user.username for user in permissions.deciders(release)] == ["admin", "bob", "zoe"]
        assert approval_rules.infeasible(release, [{"name": "all", "group": None, "approvals": 4}]) == (
            "The approval rule \u201call\u201d needs 4 approvals from anyone who may approve, but only 3 such "
            "people may approve this release; grant Release Approval/Reject to more people or ask for fewer.")


def test_the_digest_of_what_is_approved_is_the_same_in_every_version():
    """Approvals stored before an upgrade are compared after it: the canonical JSON (sorted keys, no
    spaces, UTF-8 as it is) of the commit, the hook ref commit, the resources and the hook output."""
    release = Release(commit="c" * 40, hook_ref_commit="h" * 40, resources=[{"b": 1, "a": "\u00e9"}],
                      hook_output="ok \u2713")
    assert approval_rules.digest(release) == "5dfbf7a0ea8115671198742e73d8660dd8001a871840f9f5cd7a74539fb90316"
