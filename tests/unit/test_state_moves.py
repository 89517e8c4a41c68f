"""The checked move, read whole (issue 17): a move TRANSITIONS lacks is refused saying which,
from a terminal state too; a release that does not exist is named; and a release's job
reaches Redis before the announcements of the same commit (an idle worker takes whichever
job arrives first, whatever the order of its queues)."""
from __future__ import annotations

import threading

import pytest

from tests.helpers import release, trigger, wait_for
from webapp import releases
from webapp.extensions import db, redis_connection
from worker.queues import NOTIFY_QUEUE, RELEASES_QUEUE

HOOK = {"svc/pre_release_hooks/pre_release_hook.sh": "exit 0\n"}


@pytest.mark.parametrize("expect, to_state, action, says", [
    (("SUCCEEDED",), "QUEUED", "dispatch", "SUCCEEDED → QUEUED by 'dispatch' is not a move of SPEC §3 (TRANSITIONS)"),
    (("READY",), "APPROVED", "approve", "READY → APPROVED by 'approve' is not a move of SPEC §3 (TRANSITIONS)"),
])
def test_a_move_from_a_terminal_state_or_to_a_state_it_cannot_reach_is_refused_saying_which(
        app, api, new_environment, expect, to_state, action, says):
    new_environment(HOOK)
    release_id = trigger(api)
    with app.app_context():
        with pytest.raises(ValueError) as refused:
            releases.states.move(releases.get_release(release_id), to_state, releases.WORKER, action, expect=expect)
        assert str(refused.value) == says
        db.session.rollback()
    assert release(api, release_id)["state"] == "READY"


def test_a_release_that_does_not_exist_is_named_in_a_404(app, api, new_environment):
    with app.app_context(), pytest.raises(releases.NotFound) as missing:
        releases.get_release(4242)
    assert (str(missing.value), missing.value.status) == ("Release #4242 does not exist.", 404)


def test_a_releases_job_reaches_redis_before_the_announcements_of_its_commit(app, api, new_environment):
    new_environment(HOOK)
    with app.app_context():
        connection = redis_connection()
    keys = [f"rq:queue:{NOTIFY_QUEUE}", f"rq:queue:{RELEASES_QUEUE}"]  # the notify queue first
    connection.delete(*keys)  # the announcements of the settings made above
    popped: list = []
    waiting = threading.Thread(target=lambda: popped.append(connection.blpop(keys, timeout=30)))
    waiting.start()  # an idle worker, blocked on both queues: it takes whichever job is pushed first
    wait_for(lambda: any(client["cmd"] == "blpop" for client in connection.client_list()))
    release_id = trigger(api)  # audits QUEUED and READY (two announcements), then queues the hook
    waiting.join()
    key, job_id = popped[0]
    assert (key.decode(), job_id.decode()) == (f"rq:queue:{RELEASES_QUEUE}", f"hook-{release_id}")
