"""Approval rules: who must approve a release and how many, what the hook's verdict adds,
how far each rule is met, and the digest of what an approval was given for.

A rule is {"name", "group" (None: anyone who may decide), "approvals"}. Every rule of a
release must be met. Only people who may decide the release count at all
(permissions.deciders: approve_release for its environment, never its triggerer unless
self-approval is allowed). An approval counts once, for every rule whose group its giver is
in, met already or not (so it still meets a rule whose earlier approval stopped counting); it
is given only while it meets some rule still unmet. One rejection by anyone who could count for
a rule rejects the release.

A release's rules are fixed when it starts waiting (Release.approval_rules): a change to the
environment's rules meets the releases that wait after it, and a pending release can never
become easier to approve than it was when its reviewers were asked.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import sqlalchemy as sa

from .extensions import db
from .models import DEFAULT_RULES, Decision, Group, Release, User
from .permissions import authorship_refusal, deciders, deciders_by_environment

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
NAME_RULE = "lowercase letters, digits, '-' and '_', starting with a letter or digit, at most 63 characters"
MAX_RULES = 20
MAX_APPROVALS = 10
MAX_REASON = 1000
VERDICT_LIMIT = 64 * 1024  # bytes read of a verdict file; a longer one is refused
EXAMPLE = '{"name": "dba", "group": "dba", "approvals": 1}'


class RuleError(ValueError):
    """A sentence saying what is wrong with some rules and what to do."""


def default_rules() -> list[dict]:
    return [dict(rule) for rule in DEFAULT_RULES]


# -- checking rules, as an environment's settings or a verdict ------------------------------------

def check_rules(value: object, *, what: str = "approval_rules") -> list[dict]:
    """`value` as a list of rules, or RuleError. An empty list is the default rule."""
    if value is None or value == []:
        return default_rules()
    if not isinstance(value, list):
        raise RuleError(f"{what} must be a list of rules like [{EXAMPLE}].")
    if len(value) > MAX_RULES:
        raise RuleError(f"{what} holds {len(value)} rules; at most {MAX_RULES} are allowed.")
    rules = [_check_rule(rule, f"{what}[{index}]") for index, rule in enumerate(value)]
    names = [rule["name"] for rule in rules]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise RuleError(f"{what} names the rule \u201c{twice[0]}\u201d twice; give each rule its own name.")
    missing = missing_groups(rules)
    if missing:
        raise RuleError(f"{what} names the group \u201c{missing[0]}\u201d, which does not exist; create it first "
                        "(Admin \u2192 Groups) or name another.")
    return rules


def _check_rule(rule: object, where: str) -> dict:
    if not isinstance(rule, dict):
        raise RuleError(f"{where} must be an object like {EXAMPLE}.")
    unknown = sorted(set(rule) - {"name", "group", "approvals"})
    if unknown:
        raise RuleError(f"{where} has the unknown field \u201c{unknown[0]}\u201d; "
                        "a rule has name, group and approvals.")
    name, group, approvals = rule.get("name"), rule.get("group"), rule.get("approvals", 1)
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise RuleError(f"{where}: name must be {NAME_RULE}.")
    if group is not None and (not isinstance(group, str) or not NAME.fullmatch(group)):
        raise RuleError(f"{where}: group must be a group's name, or null for anyone who may approve.")
    if isinstance(approvals, bool) or not isinstance(approvals, int) or not 1 <= approvals <= MAX_APPROVALS:
        raise RuleError(f"{where}: approvals must be a whole number from 1 to {MAX_APPROVALS}.")
    return {"name": name, "group": group, "approvals": approvals}


def missing_groups(rules: list[dict]) -> list[str]:
    """The groups `rules` name that do not exist. The ones that do are locked for share until the
    transaction ends (PostgreSQL; SQLite writes one at a time anyway): a group being renamed or
    deleted (groups.py locks it first) either waits for rules that name it to be committed, then
    sees them, or is seen here as gone. Callers take this before any environment's lock, as
    groups.py does, so the two never wait for each other in turn."""
    named = sorted({rule["group"] for rule in rules if rule["group"]})
    if not named:
        return []
    found = set(db.session.scalars(sa.select(Group.name).where(Group.name.in_(named))
                                   .with_for_update(read=True)))
    return [name for name in named if name not in found]


def weakenings(old: list[dict], new: list[dict]) -> list[str]:
    """What going from rules `old` to `new` makes easier, one phrase each (empty: nothing).

    An old rule stays as strict when some new rule asks at least as many approvals from the
    same group, or, for an old rule of anyone who may approve, from any group: whatever meets
    the new rules then meets it too. Names do not matter; replacing the default rule with a
    group's is no weaker."""
    after = {rule["name"]: rule for rule in new}
    found = []
    for rule in old:
        if any(other["approvals"] >= rule["approvals"] and rule["group"] in (None, other["group"]) for other in new):
            continue
        other = after.get(rule["name"])
        if other is None:
            found.append(f"approval rule {rule['name']} removed")
        elif other["group"] != rule["group"]:
            found.append(f"approval rule {rule['name']} moved from {_whom(rule['group'])} to {_whom(other['group'])}")
        else:
            found.append(f"approval rule {rule['name']} lowered from {rule['approvals']} to {other['approvals']}")
    return found


def _whom(group: str | None) -> str:
    return f"group {group}" if group else "anyone who may approve"


# -- the hook's verdict -------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    reason: str | None
    rules: list[dict]


def parse_verdict(raw: bytes) -> Verdict:
    """The verdict file a hook wrote ($RELEASE_VERDICT), or RuleError saying what is wrong."""
    prefix = "The hook's verdict ($RELEASE_VERDICT)"
    if len(raw) > VERDICT_LIMIT:
        raise RuleError(f"{prefix} is larger than {VERDICT_LIMIT // 1024} KiB; write only a reason and rules.")
    try:
        value = json.loads(raw.decode())  # bytes.decode reads UTF-8
    except RecursionError:
        raise RuleError(f"{prefix} is nested too deeply; write an object like "
                        f'{{"reason": "\u2026", "rules": [{EXAMPLE}]}}.') from None
    except (UnicodeDecodeError, ValueError) as error:
        raise RuleError(f"{prefix} is not valid JSON ({error}); write an object like "
                        f'{{"reason": "\u2026", "rules": [{EXAMPLE}]}}.') from None
    if not isinstance(value, dict):
        raise RuleError(f'{prefix} must be a JSON object like {{"reason": "\u2026", "rules": [{EXAMPLE}]}}.')
    unknown = sorted(set(value) - {"reason", "rules"})
    if unknown:
        raise RuleError(f"{prefix} has the unknown field \u201c{unknown[0]}\u201d; a verdict has reason and rules.")
    reason = value.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise RuleError(f"{prefix}: reason must be a string.")
    reason = " ".join((reason or "").split())[:MAX_REASON] or None
    rules = value.get("rules") or []
    if not isinstance(rules, list):
        raise RuleError(f"{prefix}: rules must be a list like [{EXAMPLE}].")
    try:
        checked = check_rules(rules, what="the verdict's rules") if rules else []
    except RuleError as error:
        raise RuleError(f"{prefix}: {error}") from None
    return Verdict(reason, checked)


def merge(base: list[dict], added: list[dict]) -> list[dict]:
    """`base` with `added` on top: a new name adds a rule, a known one may only raise its count.
    RuleError when an added rule would give a known one to other people."""
    merged = {rule["name"]: dict(rule) for rule in base}
    for rule in added:
        known = merged.get(rule["name"])
        if known is None:
            merged[rule["name"]] = dict(rule)
        elif known["group"] != rule["group"]:
            raise RuleError(f"The hook's verdict gives the rule \u201c{rule['name']}\u201d to {_whom(rule['group'])}, "
                            f"but the environment's rule of that name is for {_whom(known['group'])}; "
                            "name the verdict's rule differently.")
        else:
            known["approvals"] = max(known["approvals"], rule["approvals"])
    return list(merged.values())


# -- how far a release's rules are met ---------------------------------------------------------------

@dataclass
class RuleProgress:
    name: str
    group: str | None
    approvals: int
    approved_by: list[str] = field(default_factory=list)
    eligible: list[User] = field(default_factory=list)  # who may count for it, whether or not they have

    @property
    def met(self) -> bool:
        return len(self.approved_by) >= self.approvals

    @property
    def needed(self) -> int:
        return max(0, self.approvals - len(self.approved_by))

    def phrase(self) -> str:
        """"dba: waiting (needs 1 of 3 members)", "sre: approved by bob"."""
        by = f"approved by {', '.join(self.approved_by)}" if self.approved_by else ""
        if self.met:
            return f"{self.name}: {by}"
        people = f"{len(self.eligible)} member{'s' if len(self.eligible) != 1 else ''}" if self.group else \
            f"{len(self.eligible)} who may approve"
        more = " more" if self.approved_by else ""
        return f"{self.name}: waiting ({by + '; ' if by else ''}needs {self.needed}{more} of {people})"

    def as_json(self) -> dict:
        return {"name": self.name, "group": self.group, "approvals": self.approvals,
                "approved_by": list(self.approved_by), "met": self.met}


@dataclass
class Progress:
    rules: list[RuleProgress]
    reason: str | None
    approvers: set[int]  # ids of everyone whose approval has counted

    @property
    def met(self) -> bool:
        return all(rule.met for rule in self.rules)

    def summary(self) -> str:
        """"1 of 2 rules met — dba: waiting (needs 1 of 3 members), sre: approved by bob"."""
        met = sum(rule.met for rule in self.rules)
        phrases = ", ".join(rule.phrase() for rule in self.rules)
        return f"{met} of {len(self.rules)} rule{'s' if len(self.rules) != 1 else ''} met \u2014 {phrases}"

    def counts_for(self, user: User | None) -> list[str]:
        """The names of the unmet rules `user`'s approval would count for now (empty: none)."""
        if user is None or user.id in self.approvers:
            return []
        return [rule.name for rule in self.rules if not rule.met and any(u.id == user.id for u in rule.eligible)]

    def counted_for(self, user: User | None) -> list[str]:
        """The names of every rule `user`'s approval counts for, met already or not: what an
        approval records (Decision.rules). It is given only when counts_for is not empty."""
        if user is None:
            return []
        return [rule.name for rule in self.rules if any(u.id == user.id for u in rule.eligible)]

    def could_count(self, user: User | None) -> bool:
        """Whether `user` is one who could count towards some rule."""
        return user is not None and any(any(u.id == user.id for u in rule.eligible) for rule in self.rules)

    def may_reject(self, user: User | None) -> bool:
        """Whether `user`, who may decide the release (permissions.decide_refusal), may reject it:
        one who could count towards a rule; or anyone, once an unmet rule can no longer be met
        (its group lost members since it began waiting), so that a release nobody could approve
        never holds its slot with nobody to turn it down."""
        return user is not None and (self.unreachable or self.could_count(user))

    @property
    def unreachable(self) -> bool:
        """Some unmet rule needs more approvals than there are people left who could give them."""
        return any(rule.needed > len([u for u in rule.eligible if u.id not in self.approvers])
                   for rule in self.rules if not rule.met)

    def still_counting(self) -> list[User]:
        """Everyone whose approval would still count, by name: who is asked, and who is told."""
        people = {u.id: u for rule in self.rules if not rule.met for u in rule.eligible if u.id not in self.approvers}
        return sorted(people.values(), key=lambda u: u.username)

    def why_not(self, user: User | None) -> str:
        """Why `user`'s approval would count for nothing (they may decide the release)."""
        if user is not None and user.id in self.approvers:
            return "You approved this release already; the rules still unmet need other people."
        if self.met:
            return "Every approval rule of this release is met already."
        waiting = [rule for rule in self.rules if not rule.met]
        need = "; ".join(f"{rule.name} needs {rule.needed} more from {_whom(rule.group)}" for rule in waiting)
        return f"Your approval would count for no rule still unmet ({need}); someone who can count must approve."

    def approve_label(self, user: User | None) -> str:
        """What `user`'s Approve button says: what the click counts for ("Approve as sre"), or
        "Approve" when the only rule is the default one."""
        counted = self.counts_for(user)
        only_default = len(self.rules) == 1 and self.rules[0].name == "default" and self.rules[0].group is None
        if only_default or not counted:
            return "Approve"
        if counted == ["default"]:  # beside a rule the hook added: say it meets only the default one
            return "Approve (default rule)"
        return f"Approve as {', '.join(counted)}"

    def as_json(self) -> dict:
        return {"rules": [rule.as_json() for rule in self.rules], "reason": self.reason, "met": self.met}


def reject_refusal(progress: Progress) -> str:
    """Why someone who may decide a release may not reject it (Progress.may_reject is False)."""
    groups = ", ".join(sorted({rule.group for rule in progress.rules if rule.group}))
    return f"Only someone who could approve for one of its rules may reject this release (members of {groups})."


def rules_of(release: Release) -> list[dict]:
    return release.approval_rules or default_rules()


def progress(release: Release, approvals: list[Decision] | None = None) -> Progress:
    """How far `release`'s rules are met, read from its approvals as stored now."""
    if approvals is None:
        approvals = list(db.session.scalars(sa.select(Decision).where(
            Decision.release_id == release.id, Decision.decision == "APPROVE").order_by(Decision.id)))
    given = [(d.user_id, d.rules or [], _name(d)) for d in approvals]
    return _progress(rules_of(release), release.approval_reason, given, deciders(release))


class _Pending(Protocol):
    id: int
    environment_id: int
    triggered_by_id: int | None
    approval_rules: list | None
    approval_reason: str | None
    since: dict | None


def progress_of(releases: Iterable[_Pending]) -> dict[int, Progress]:
    """progress() of many releases (rows or Release objects with the fields of _Pending) in a
    fixed number of queries, whatever their number: the dashboard, the inbox and the navigation
    count show the progress of every pending release at once. Release id → Progress."""
    releases = list(releases)
    if not releases:
        return {}
    given: dict[int, list[tuple[int | None, list[str], str]]] = {}
    approvals = (sa.select(Decision.release_id, Decision.user_id, Decision.rules, User.username)
                 .outerjoin(Decision.user).where(Decision.decision == "APPROVE"))
    # Both no mutate: rows are grouped by release, so other releases' rows would only cost time, and
    # SQLite returns a release's rows in id order anyway (PostgreSQL need not: the order of approved_by).
    approvals = approvals.where(Decision.release_id.in_([r.id for r in releases]))  # pragma: no mutate
    for row in db.session.execute(approvals.order_by(Decision.id)):  # pragma: no mutate
        given.setdefault(row.release_id, []).append((row.user_id, row.rules or [], row.username or DELETED))
    people = deciders_by_environment({r.environment_id for r in releases})
    found = {}
    for release in releases:
        self_approval, no_authors, eligible = people.get(release.environment_id, _NOBODY_DECIDES)
        if not self_approval and release.triggered_by_id is not None:
            eligible = [u for u in eligible if u.id != release.triggered_by_id]
        if no_authors:
            eligible = [u for u in eligible if authorship_refusal(release.since, u) is None]
        found[release.id] = _progress(release.approval_rules or default_rules(), release.approval_reason,
                                      given.get(release.id, []), eligible)
    return found


# deciders_by_environment leaves out an environment nobody may decide in: no one to leave out there either.
_NOBODY_DECIDES: tuple[bool, bool, list[User]] = (False, False, [])


def _progress(rules: list[dict], reason: str | None, given: list[tuple[int | None, list[str], str]],
              people: list[User]) -> Progress:
    """`given`: the approvals, oldest first, as (user id, the rules it counted for, the giver's name)."""
    progressed = []
    for rule in rules:
        eligible = people if rule["group"] is None else [u for u in people if _in_group(u, rule["group"])]
        # An approval counts only while its giver could still give it: one who was deactivated,
        # lost the permission or the group, or became the triggerer's equal, counts no more.
        still = {u.id for u in eligible}
        approved_by = [name for user_id, counted, name in given if rule["name"] in counted and user_id in still]
        progressed.append(RuleProgress(rule["name"], rule["group"], rule["approvals"], approved_by, eligible))
    return Progress(progressed, reason, {user_id for user_id, _counted, _name in given if user_id is not None})


def _in_group(user: User, group: str) -> bool:
    return any(g.name == group for g in user.groups)


DELETED = "a deleted user"


def _name(decision: Decision) -> str:
    return decision.user.username if decision.user is not None else DELETED


def infeasible(release: Release, rules: list[dict]) -> str | None:
    """Why `rules` could never be met for `release` (a missing group, too few people who could
    count), or None. A release is failed rather than left waiting for people who do not exist."""
    missing = missing_groups(rules)
    if missing:
        return (f"The approval rules name the group \u201c{missing[0]}\u201d, which does not exist, so nobody "
                "could approve this release; create the group or change the rules, then trigger it again.")
    people = deciders(release)
    for rule in rules:
        eligible = people if rule["group"] is None else [u for u in people if _in_group(u, rule["group"])]
        if len(eligible) < rule["approvals"]:
            return (f"The approval rule \u201c{rule['name']}\u201d needs {rule['approvals']} approval"
                    f"{'s' if rule['approvals'] != 1 else ''} from {_whom(rule['group'])}, but only "
                    f"{len(eligible)} such {'person' if len(eligible) == 1 else 'people'} may approve "
                    "this release; grant Release Approval/Reject to more people or ask for fewer.")
    return None


def digest(release: Release) -> str:
    """sha256 over what an approval approves: the commit, the hook ref commit, the resources
    and the hook output. The same release always gives the same digest."""
    body = json.dumps({"commit": release.commit, "hook_ref_commit": release.hook_ref_commit,
                       "resources": release.resources, "hook_output": release.hook_output},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()
