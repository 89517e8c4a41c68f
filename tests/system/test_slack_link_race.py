"""Two codes linking one Slack user at the same moment (PostgreSQL: SQLite writes one at a
time): both find no link and add one, and the unique (workspace, Slack user) pair lets only the
first in. The second is told so in a sentence, with its code unused, not given a 500."""
from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.helpers import wait_until
from tests.system.test_concurrency import waiting_for_a_lock
from tests.system.test_group_locks import InThread
from webapp.extensions import db

TEAM, SLACK_USER = "T0TEAM", "U0RACE"


def user_id(name: str) -> int:
    from webapp.models import User

    return db.session.scalar(sa.select(User.id).where(User.username == name))


@pytest.mark.postgresql
def test_a_slack_user_linked_by_two_codes_at_once_gets_one_link_and_a_sentence_for_the_other(app, people):
    from webapp.models import SlackLink, SlackLinkCode, User
    from webapp.notify import slack_links

    with app.app_context():
        code = slack_links.issue_code(db.session.get(User, user_id("approver")))
        member = user_id("member")
        holder, watcher = db.engine.connect(), db.engine.connect()
    try:  # what the other code's link holds until it commits: the pair, as member
        holder.execute(sa.insert(SlackLink).values(team_id=TEAM, slack_user_id=SLACK_USER, slack_username="u0race",
                                                   user_id=member))
        linking = InThread(app, lambda: slack_links.link(TEAM, SLACK_USER, "u0race", code))
        assert wait_until(lambda: waiting_for_a_lock(watcher) == 1), "the second link did not wait for the first"
        holder.commit()
        [reply] = linking.join()
    finally:
        holder.close()
        watcher.close()
    assert reply == ("Another code linked this Slack user at the same moment; nothing was linked with this "
                     "one, and it still works: send it again to act as its Releasegate user instead.")
    with app.app_context():
        assert [(link.user_id) for link in db.session.scalars(sa.select(SlackLink))] == [member]
        assert db.session.scalar(sa.select(SlackLinkCode.used_at)) is None
        # sent again, the same code links: the Slack user proves they are approver now
        assert slack_links.link(TEAM, SLACK_USER, "u0race", code).startswith("Linked: in Slack you now act as approver")
        assert slack_links.linked_user(TEAM, SLACK_USER).username == "approver"
