"""Test building blocks for approval rules: groups and an environment's rules written with the
model (the groups API and the settings form are built elsewhere), and a hook whose verdict gives
the reason a release needs approval."""
from __future__ import annotations

import sqlalchemy as sa

REASON = "The migration drops the column payments.legacy_iban"
WAITS_WITH_A_REASON = {"svc/pre_release_hooks/pre_release_hook.sh": (
    f"echo '{{\"reason\": \"{REASON}\"}}' > \"$RELEASE_VERDICT\"\necho asking for a human; exit 2\n")}
TWO_RULES = [{"name": "sre", "group": "sre", "approvals": 1}, {"name": "dba", "group": "dba", "approvals": 1}]
TWO_GROUPS = {"sre": ["alice"], "dba": ["bob", "carol"]}
WAITING_FOR_BOTH = "0 of 2 rules met \u2014 sre: waiting (needs 1 of 1 member), dba: waiting (needs 1 of 2 members)"
SRE_MET = "1 of 2 rules met \u2014 sre: approved by alice, dba: waiting (needs 1 of 2 members)"


def set_rules(app, rules: list[dict], groups: dict[str, list[str]] | None = None, *, project: str = "svc",
              environment: str = "env") -> None:
    """Give `project/environment` approval `rules`, making `groups` (name → member usernames) first."""
    from webapp.extensions import db
    from webapp.models import Environment, Group, Project, User

    with app.app_context():
        for name, members in (groups or {}).items():
            group = db.session.scalar(sa.select(Group).where(Group.name == name)) or Group(name=name)
            group.members.extend(db.session.scalars(sa.select(User).where(User.username.in_(members))))
            db.session.add(group)
        found = db.session.scalar(sa.select(Environment).join(Project).where(
            Project.name == project, Environment.name == environment))
        found.approval_rules = rules
        db.session.commit()


def two_rules(app, people, new_environment, files: dict | None = None, **settings) -> None:
    """svc/env, whose releases need sre (alice) and dba (bob or carol); the hook gives REASON.
    The personas `approver` and `admin` may decide too, but are in neither group."""
    new_environment(WAITS_WITH_A_REASON if files is None else files, **settings)
    for name in ("alice", "bob", "carol"):
        people.add(name, "approve_release")
    set_rules(app, TWO_RULES, TWO_GROUPS)
