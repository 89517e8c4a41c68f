"""Queue names and the one enqueue helper the webapp uses (after commit)."""
from __future__ import annotations

import logging

from flask import current_app
from redis.exceptions import RedisError
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from webapp.extensions import redis_connection

RELEASES_QUEUE = "releasegate"
JOBS = {"hook": "worker.jobs.run_pre_release_hook", "execute": "worker.jobs.execute_release"}
log = logging.getLogger(__name__)


def release_queue() -> Queue:
    return Queue(RELEASES_QUEUE, connection=redis_connection(), serializer=JSONSerializer)


def job_id(kind: str, release_id: int) -> str:
    return f"{kind}-{release_id}"


def _ttls() -> dict[str, int]:
    """How long Redis keeps a job and its result once it ran, or failed: not forever."""
    config = current_app.config
    return {"result_ttl": config["RQ_RESULT_TTL_SECONDS"], "failure_ttl": config["RQ_FAILURE_TTL_SECONDS"]}


def enqueue_release_job(kind: str, release_id: int, *, only_if_missing: bool = False) -> bool:
    """Queue a release's hook or apply. Jobs re-read the release, so a duplicate is harmless.

    The runner enforces its own timeouts and kills process groups itself, so RQ's timeout
    is off (-1); there is no Retry: a retried apply could run twice.
    """
    try:
        queue = release_queue()
        if only_if_missing and _job_alive(queue, job_id(kind, release_id)):
            return False
        queue.enqueue(JOBS[kind], release_id, job_id=job_id(kind, release_id), job_timeout=-1, **_ttls(),
                      description=f"{kind} release #{release_id}")
        return True
    except (RedisError, RuntimeError) as error:  # RuntimeError: REDIS_URL is not set
        # The release is safe in the database; the reconciler enqueues it again.
        log.warning("Could not enqueue %s for release %s: %s", kind, release_id, error)
        return False


def _job_alive(queue: Queue, id_: str) -> bool:
    try:
        job = Job.fetch(id_, connection=queue.connection, serializer=JSONSerializer)
    except Exception:
        return False
    return job.get_status(refresh=False) in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED,
                                             JobStatus.SCHEDULED)


# -- notifications: mail and webhooks, on a queue of their own ----------------------------------

NOTIFY_QUEUE = "releasegate-notify"
NOTIFY_JOBS = {"announce": "worker.jobs.announce_event", "mail": "worker.jobs.send_mail",
               "webhook": "worker.jobs.deliver_webhook", "slack": "worker.jobs.send_slack_message"}


def notify_queue() -> Queue:
    return Queue(NOTIFY_QUEUE, connection=redis_connection(), serializer=JSONSerializer)


def enqueue_notify_job(kind: str, row_id: int, *, only_if_missing: bool = False) -> bool:
    """Queue announcing an audit event, sending a mail, delivering a webhook or posting (or
    updating) a Slack message.

    No RQ Retry: each job claims its row with a compare-and-set and records the outcome;
    a failure sets the row's next attempt and the worker's periodic sweep queues it again
    (notify.resume_due), so retries survive a lost queue and never overlap.
    """
    try:
        queue = notify_queue()
        if only_if_missing and _job_alive(queue, job_id(kind, row_id)):
            return False
        queue.enqueue(NOTIFY_JOBS[kind], row_id, job_id=job_id(kind, row_id), job_timeout=180, **_ttls(),
                      description=f"{kind} #{row_id}")
        return True
    except (RedisError, RuntimeError) as error:
        log.warning("Could not enqueue %s #%s: %s", kind, row_id, error)
        return False
