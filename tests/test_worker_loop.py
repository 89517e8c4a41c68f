"""The worker's loop: RQ's per-job bookkeeping trimmed where it buys nothing (worker/__main__.py),
and a release job followed by the release job it queued itself (worker/jobs.py)."""
from __future__ import annotations

from redis import Redis
from rq.serializers import JSONSerializer

from tests.helpers import state, trigger
from worker import jobs, queues
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


# -- a release job followed by the one it queued itself -----------------------------------------


def queued_job_ids(app) -> list[str]:
    with app.app_context():
        return queues.release_queue().get_job_ids()


def run_one_job(app) -> None:
    """Run exactly the first queued release job, as a worker would, then stop."""
    from rq import SimpleWorker

    from webapp.extensions import redis_connection

    with app.app_context():
        worker = SimpleWorker([queues.RELEASES_QUEUE], connection=redis_connection(), serializer=JSONSerializer)
        worker.work(burst=True, max_jobs=1, logging_level="WARNING")


def test_a_job_runs_the_next_release_it_queued_itself_taking_its_job_back(app, api, new_environment):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 0\n"})
    first, second, third = trigger(api), trigger(api), trigger(api)
    assert queued_job_ids(app) == [f"hook-{first}"]
    run_one_job(app)
    assert [state(api, r) for r in (first, second, third)] == ["SUCCEEDED"] * 3
    assert queued_job_ids(app) == []
    with app.app_context():
        from rq.job import Job

        from webapp.extensions import redis_connection

        assert not redis_connection().exists(Job.key_for(f"hook-{second}"))  # taken back, never left behind


def test_jobs_waiting_in_the_queue_go_first(app, api, new_environment):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 0\n"})
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 0\n"}, name="other")
    first, second = trigger(api), trigger(api)
    elsewhere = trigger(api, path="svc/other")
    run_one_job(app)
    assert state(api, first) == "SUCCEEDED"
    assert queued_job_ids(app) == [f"hook-{elsewhere}", f"hook-{second}"]  # FIFO: the other one first
    assert state(api, second) == "READY"


def test_a_job_some_worker_took_already_is_left_to_it(app, api, new_environment, monkeypatch):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 0\n"})
    first, second = trigger(api), trigger(api)
    take_back = queues.take_back_queued

    def another_worker_was_faster():
        with app.app_context():
            queues.release_queue().pop_job_id()  # another worker dequeued hook-<second>
        return take_back()

    monkeypatch.setattr(queues, "take_back_queued", another_worker_was_faster)
    run_one_job(app)
    assert (state(api, first), state(api, second)) == ("SUCCEEDED", "READY")


def test_following_stops_after_a_while(app, api, new_environment, monkeypatch):
    monkeypatch.setattr(jobs, "CHAIN_SECONDS", 0)
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 0\n"})
    first, second = trigger(api), trigger(api)
    run_one_job(app)
    assert (state(api, first), state(api, second)) == ("SUCCEEDED", "READY")
    assert queued_job_ids(app) == [f"hook-{second}"]


def test_a_followed_run_that_fails_is_logged_and_repaired_like_a_failed_job(app, api, new_environment, monkeypatch,
                                                                            caplog):
    from datetime import timedelta

    from webapp import runner
    from webapp.models import utcnow
    from webapp.reconcile import reconcile

    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 0\n"})
    first, second = trigger(api), trigger(api)
    run_hook = runner.run_pre_release_hook

    def breaks_on_the_second(release_id):
        if release_id == second:
            raise RuntimeError("the database went away")
        return run_hook(release_id)

    monkeypatch.setattr(runner, "run_pre_release_hook", breaks_on_the_second)
    run_one_job(app)
    assert f"release job hook-{second} failed" in caplog.text
    assert (state(api, first), state(api, second)) == ("SUCCEEDED", "READY")
    monkeypatch.setattr(runner, "run_pre_release_hook", run_hook)
    with app.app_context():
        assert reconcile(utcnow() + timedelta(seconds=30))["requeued"] == [second]
    run_one_job(app)
    assert state(api, second) == "SUCCEEDED"
