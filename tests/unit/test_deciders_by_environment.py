"""permissions.deciders_by_environment, which the dashboard and the inbox read who may decide
from: for exactly the environments asked, everyone who may approve there, by username."""
from __future__ import annotations

import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import Environment
from webapp.permissions import deciders_by_environment


def test_the_deciders_of_each_environment_asked_come_by_username_and_no_other_environment(app, people,
                                                                                      new_environment):
    new_environment({"README": "qa\n"}, name="qa")
    new_environment({"README": "prod\n"}, name="prod", allow_self_approval=True)
    with app.app_context():
        qa, prod = (db.session.scalar(sa.select(Environment).where(Environment.name == name))
                    for name in ("qa", "prod"))
        qa_id, prod_id = qa.id, prod.id
    people.add("zoe", "approve_release")  # added before bob: the order of their rows is not the order of names
    people.add("bob", "approve_release", environment=qa)
    people.add("amy", "approve_release", environment=prod)
    with app.app_context():
        found = deciders_by_environment([qa_id])
        assert list(found) == [qa_id]
        self_approval, no_authors, deciders = found[qa_id]
        assert (self_approval, no_authors) == (False, False)
        assert [user.username for user in deciders] == ["admin", "approver", "bob", "zoe"]
        both = deciders_by_environment([qa_id, prod_id])
        assert sorted(both) == sorted([qa_id, prod_id])
        assert both[prod_id][0] is True and [user.username for user in both[prod_id][2]] == [
            "admin", "amy", "approver", "zoe"]
        assert deciders_by_environment([]) == {}
