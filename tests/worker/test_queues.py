"""How the worker takes its jobs: the releases and notify queues in turn."""
from __future__ import annotations

from rq import Queue
from rq.serializers import JSONSerializer

from webapp.extensions import redis_connection
from worker.__main__ import ReleaseWorker, work
from worker.queues import NOTIFY_QUEUE, RELEASES_QUEUE


def test_a_mail_waits_for_one_release_job_not_for_every_queued_hook(app):
    with app.app_context():
        connection = redis_connection()
        releases, notify = (Queue(name, connection=connection, serializer=JSONSerializer)
                            for name in (RELEASES_QUEUE, NOTIFY_QUEUE))
        hooks = [releases.enqueue("time.sleep", 0) for _ in range(3)]
        mail = notify.enqueue("time.sleep", 0)
        work(ReleaseWorker([RELEASES_QUEUE, NOTIFY_QUEUE], connection=connection, serializer=JSONSerializer),
             burst=True)
        for job in (*hooks, mail):
            job.refresh()
        ended = sorted((*hooks, mail), key=lambda job: job.ended_at)
        assert all(job.get_status() == "finished" for job in ended)
        assert ended.index(mail) == 1, [job.origin for job in ended]
