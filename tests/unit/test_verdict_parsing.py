"""The hook's verdict file ($RELEASE_VERDICT) as approval_rules.parse_verdict reads it: the
sentence each mistake is refused with, the size it may have, and what an empty reason becomes."""
from __future__ import annotations

import pytest

from webapp.approval_rules import EXAMPLE, MAX_REASON, NAME_RULE, VERDICT_LIMIT, RuleError, Verdict, parse_verdict

LIKE = f'{{"reason": "\u2026", "rules": [{EXAMPLE}]}}'


def refusal(raw: bytes) -> str:
    with pytest.raises(RuleError) as refused:
        parse_verdict(raw)
    return str(refused.value)


def test_a_verdict_that_is_not_an_object_is_refused_with_the_whole_sentence():
    assert refusal(b"[]") == f"The hook's verdict ($RELEASE_VERDICT) must be a JSON object like {LIKE}."


def test_a_verdict_of_exactly_the_limit_is_read_and_one_byte_more_is_refused():
    head, tail = b'{"reason": "', b'"}'
    exactly = head + b"a" * (VERDICT_LIMIT - len(head) - len(tail)) + tail
    assert len(exactly) == VERDICT_LIMIT
    assert parse_verdict(exactly) == Verdict("a" * MAX_REASON, [])
    assert refusal(exactly + b" ") == ("The hook's verdict ($RELEASE_VERDICT) is larger than 64 KiB; write only a "
                                       "reason and rules.")


def test_a_verdict_without_a_reason_or_with_a_blank_one_gives_no_reason():
    assert parse_verdict(b"{}") == Verdict(None, [])
    assert parse_verdict(b'{"reason": ""}') == Verdict(None, [])
    assert parse_verdict(b'{"reason": " \\n\\t "}') == Verdict(None, [])
    assert parse_verdict(b'{"reason": "  needs a  DBA\\n"}') == Verdict("needs a DBA", [])


def test_a_verdict_that_is_not_utf8_is_refused_as_not_valid_json():
    message = refusal(b'{"reason": "\xff"}')
    assert message.startswith("The hook's verdict ($RELEASE_VERDICT) is not valid JSON ('utf-8' codec can't decode")
    assert message.endswith(f"; write an object like {LIKE}.")


def test_a_bad_rule_in_a_verdict_is_named_as_the_verdicts_rules():
    assert refusal(b'{"rules": [{"name": "Bad Name"}]}') == (
        f"The hook's verdict ($RELEASE_VERDICT): the verdict's rules[0]: name must be {NAME_RULE}.")
    assert refusal(b'{"rules": [{"name": "a"}, {"name": "a"}]}') == (
        "The hook's verdict ($RELEASE_VERDICT): the verdict's rules names the rule \u201ca\u201d twice; give each "
        "rule its own name.")


def test_a_verdicts_rules_for_anyone_are_read_with_their_approvals():
    assert parse_verdict(b'{"reason": "big", "rules": [{"name": "more", "group": null, "approvals": 2}]}') == (
        Verdict("big", [{"name": "more", "group": None, "approvals": 2}]))
