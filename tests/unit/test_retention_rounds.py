"""Retention's rounds: at most one pruning per period among all workers, the reconciler
running it, and RQ jobs that expire."""
from __future__ import annotations

import sqlalchemy as sa
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from tests.unit.retention_support import (
    NOTE_90,
    add_release,
    outputs,
    world,  # noqa: F401 - a fixture, used by name
)
from webapp import retention

# -- at most once per period, among all workers --------------------------------------------------------

def test_pruning_runs_at_most_once_per_period(app, world):
    redis = Redis.from_url(app.config["REDIS_URL"])
    with app.app_context():
        first = add_release(world)
        assert retention.prune_if_due() is not None
        assert outputs(first)[0] == NOTE_90
        assert 3500 < redis.ttl(retention.GUARD_KEY) <= retention.PERIOD_SECONDS

        second = add_release(world)  # another worker's reconciler, a moment later: not due
        assert retention.prune_if_due() is None
        assert outputs(second)[0] == "hook says go\n"

        redis.delete(retention.GUARD_KEY)  # an hour later
        assert retention.prune_if_due().outputs == 2
        assert outputs(second)[0] == NOTE_90


def test_a_round_that_stopped_at_its_batch_limit_leaves_the_next_round_due(app, world, monkeypatch):
    monkeypatch.setattr(retention, "BATCH_SIZE", 2)
    monkeypatch.setattr(retention, "MAX_BATCHES", 1)
    with app.app_context():
        for _ in range(3):
            add_release(world, exec_output="")
        assert retention.prune_if_due().more
        assert retention.prune_if_due() is not None  # due again at once
        assert retention.prune_if_due() is None  # done: due in an hour


def test_the_reconciler_prunes(app, world):
    from webapp.reconcile import reconcile

    with app.app_context():
        release_id = add_release(world)
        reconcile()
        assert outputs(release_id) == (NOTE_90, NOTE_90)


def test_a_failing_prune_does_not_stop_the_reconciler(app, world, monkeypatch, caplog):
    from webapp.reconcile import reconcile

    def broken(*args, **kwargs):
        raise sa.exc.OperationalError("DELETE", {}, Exception("disk I/O error"))

    monkeypatch.setattr(retention, "prune", broken)
    with app.app_context():
        assert reconcile()["expired"] == []
    assert "pruning old data failed" in caplog.text


# -- RQ jobs do not stay in Redis forever ----------------------------------------------------------------

def test_enqueued_jobs_carry_the_configured_ttls_and_expire_after_running(app, run_jobs, run_notify_jobs):
    from worker.queues import enqueue_notify_job, enqueue_release_job, job_id

    app.config.update(RQ_RESULT_TTL_SECONDS=123, RQ_FAILURE_TTL_SECONDS=4567)
    redis = Redis.from_url(app.config["REDIS_URL"])
    with app.app_context():
        assert enqueue_release_job("hook", 987654)  # no such release: the job does nothing
        assert enqueue_notify_job("mail", 987654)
    jobs = [Job.fetch(job_id(kind, 987654), connection=redis, serializer=JSONSerializer) for kind in ("hook", "mail")]
    for job in jobs:
        assert (job.result_ttl, job.failure_ttl) == (123, 4567)
        assert redis.hget(job.key, "result_ttl") == b"123" and redis.hget(job.key, "failure_ttl") == b"4567"
        assert redis.ttl(job.key) == -1  # a queued job waits as long as it takes
    run_jobs()
    run_notify_jobs()
    for job in jobs:
        assert 0 < redis.ttl(job.key) <= 123
        results = [key for key in redis.scan_iter("rq:results:*") if key.decode().endswith(job.id)]
        assert results and all(0 < redis.ttl(key) <= 123 for key in results)


def test_the_default_ttls_are_an_hour_for_results_and_a_week_for_failures(app):
    assert (app.config["RQ_RESULT_TTL_SECONDS"], app.config["RQ_FAILURE_TTL_SECONDS"]) == (3600, 7 * 24 * 3600)
    assert (app.config["OUTPUT_RETENTION_DAYS"], app.config["NOTIFY_RETENTION_DAYS"]) == (90, 30)
