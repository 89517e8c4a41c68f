"""The sentences the approval rules give people: a verdict's rule that would go to another group
(approval_rules.merge), a rule moved to another group (weakenings, which the admins are mailed),
and why an approval would count for nothing once every rule is met (Progress.why_not)."""
from __future__ import annotations

import pytest

from webapp.approval_rules import Progress, RuleError, RuleProgress, merge, weakenings


def test_a_verdicts_rule_may_not_give_an_environments_rule_to_another_group():
    base = [{"name": "dba", "group": "dba", "approvals": 1}]
    with pytest.raises(RuleError) as refused:
        merge(base, [{"name": "dba", "group": "sre", "approvals": 2}])
    assert str(refused.value) == (
        "The hook's verdict gives the rule \u201cdba\u201d to group sre, but the environment's rule of that name "
        "is for group dba; name the verdict's rule differently.")
    with pytest.raises(RuleError) as refused:
        merge([{"name": "default", "group": None, "approvals": 1}], [{"name": "default", "group": "dba",
                                                                       "approvals": 1}])
    assert str(refused.value) == (
        "The hook's verdict gives the rule \u201cdefault\u201d to group dba, but the environment's rule of that name "
        "is for anyone who may approve; name the verdict's rule differently.")


def test_a_verdicts_rule_of_a_known_name_and_group_only_raises_its_count():
    base = [{"name": "dba", "group": "dba", "approvals": 2}]
    assert merge(base, [{"name": "dba", "group": "dba", "approvals": 1},
                        {"name": "sre", "group": "sre", "approvals": 1}]) == [
        {"name": "dba", "group": "dba", "approvals": 2}, {"name": "sre", "group": "sre", "approvals": 1}]


def test_a_rule_moved_to_another_group_is_named_with_both_groups():
    assert weakenings([{"name": "dba", "group": "dba", "approvals": 2}],
                      [{"name": "dba", "group": "sre", "approvals": 1}]) == [
        "approval rule dba moved from group dba to group sre"]
    assert weakenings([{"name": "dba", "group": "dba", "approvals": 1}],
                      [{"name": "dba", "group": None, "approvals": 1}]) == [
        "approval rule dba moved from group dba to anyone who may approve"]


def test_once_every_rule_is_met_an_approval_would_count_for_nothing_and_says_so():
    met = Progress([RuleProgress("default", None, 1, ["bob"], [])], None, {2})
    assert met.why_not(None) == "Every approval rule of this release is met already."
