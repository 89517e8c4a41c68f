"""worker/__main__.py's ReleaseWorker: RQ's per-job bookkeeping, trimmed where it buys nothing."""
from __future__ import annotations

from redis import Redis
from rq.serializers import JSONSerializer

from worker.__main__ import ReleaseWorker
from worker.queues import NOTIFY_QUEUE, RELEASES_QUEUE


class Counting(Redis):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.commands: list[str] = []

    def execute_command(self, *args, **options):
        self.commands.append(str(args[0]))
        return super().execute_command(*args, **options)


def test_the_worker_key_is_renewed_and_suspension_asked_at_most_once_a_second(redis_url, monkeypatch):
    connection = Counting.from_url(redis_url)
    worker = ReleaseWorker([RELEASES_QUEUE, NOTIFY_QUEUE], connection=connection, serializer=JSONSerializer)
    clock, asked = [1000.0], []
    monkeypatch.setattr("worker.__main__.time.monotonic", lambda: clock[0])
    monkeypatch.setattr("rq.worker.base.is_suspended", lambda connection, worker=None: asked.append(1) and False)
    for _ in range(3):  # three jobs within a second
        worker.heartbeat()
        worker.check_for_suspension(burst=False)
    assert connection.commands.count("HSET") == 1 and len(asked) == 1
    clock[0] += 1.5
    worker.heartbeat()
    worker.check_for_suspension(burst=False)
    assert connection.commands.count("HSET") == 2 and len(asked) == 2
    worker.heartbeat(60)  # RQ's own calls with a timeout or a pipeline are never skipped
    assert connection.commands.count("HSET") == 3
