"""Prometheus metrics, computed when scraped from the database and Redis, so every web process
answers the same whatever ran where (docs/operations.md, "Metrics").

Nothing is counted in a process's memory: release states, ages, durations and delivery logs are
read from the database, workers and their heartbeats from RQ's registry in Redis, and the
reconciler's repairs from a Redis hash that every reconciler round adds to (count_repairs).
"""
from __future__ import annotations

import logging
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import datetime

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString
from redis.exceptions import RedisError
from rq import Worker

from .extensions import db, redis_connection
from .models import (
    SLOT_STATES,
    TERMINAL_STATES,
    AuditEvent,
    Environment,
    OutgoingMail,
    Project,
    Release,
    WebhookDelivery,
    utcnow,
)

log = logging.getLogger(__name__)

ACTIVE_STATES = ("QUEUED", *SLOT_STATES)
LABELS = ("project", "environment")
HOOK_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800)
COMMAND_BUCKETS = (10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
# Every status a delivery log row can have (notify/mail.py, notify/webhooks.py), so each series
# exists, at 0, before the first row reaches it.
MAIL_STATUSES = ("pending", "sending", "retrying", "sent", "outbox", "skipped", "failed")
WEBHOOK_STATUSES = ("pending", "sending", "retrying", "succeeded", "failed")
# The keys of reconcile.reconcile()'s report, and where their running totals live.
REPAIRS = ("worker_lost", "timed_out", "expired", "reminded", "reviews_overdue", "requeued")
REPAIRS_KEY = "releasegate:metrics:reconciler-repairs"


def scrape_text() -> bytes:
    """The Prometheus text format of everything below, read now."""
    registry = CollectorRegistry()  # not the default one: no per-process metrics of this gunicorn worker
    registry.register(ReleasegateCollector())
    return generate_latest(registry)


def count_repairs(report: dict[str, list[int]]) -> None:
    """Add one reconciler round's repairs to the totals in Redis, shared by every worker host.
    Never raises: counting must not stop the repairs."""
    counts = {key: len(ids) for key, ids in report.items() if ids}
    if not counts:
        return
    try:
        pipeline = redis_connection().pipeline(transaction=False)
        for key, count in counts.items():
            pipeline.hincrby(REPAIRS_KEY, key, count)
        pipeline.execute()
    except (RedisError, RuntimeError) as error:  # RuntimeError: REDIS_URL is not set
        log.warning("could not count the reconciler's repairs %s: %s", counts, error)


class ReleasegateCollector:
    """prometheus_client calls collect() once per scrape, within the request's app context."""

    def collect(self) -> Iterator[Metric]:
        now = utcnow()
        environments = _environments()
        yield from _release_states(environments)
        yield from _waiting_ages(environments, now)
        yield _histogram("releasegate_hook_duration_seconds",
                         "Pre-release hook runs, from the hook's start until its release left READY.",
                         HOOK_BUCKETS, _hook_durations(), environments)
        yield _histogram("releasegate_release_command_duration_seconds",
                         "Release commands (or waits for an external finish), from their start until the "
                         "release finished.", COMMAND_BUCKETS, _command_durations(), environments)
        yield _notifications()
        db.session.rollback()  # no read transaction left open on the pooled connection
        try:
            yield from _from_redis()
        except (RedisError, RuntimeError) as error:
            log.warning("metrics: Redis could not be read, so workers and repairs are left out: %s", error)


def _environments() -> dict[int, tuple[str, str]]:
    rows = db.session.execute(sa.select(Environment.id, Project.name, Environment.name)
                              .join(Project, Environment.project_id == Project.id)
                              .order_by(Project.name, Environment.name))
    return {environment_id: (project, name) for environment_id, project, name in rows}


def _release_states(environments: dict[int, tuple[str, str]]) -> Iterator[Metric]:
    counts = dict.fromkeys(((environment_id, state) for environment_id in environments
                            for state in (*ACTIVE_STATES, *TERMINAL_STATES)), 0)
    rows = db.session.execute(sa.select(Release.environment_id, Release.state, sa.func.count())
                              .group_by(Release.environment_id, Release.state))
    counts.update({(environment_id, state): count for environment_id, state, count in rows})
    active = GaugeMetricFamily("releasegate_releases", "Releases not yet finished, by state.",
                               labels=(*LABELS, "state"))
    finished = CounterMetricFamily("releasegate_release_outcomes", "Releases finished, by final state.",
                                   labels=(*LABELS, "state"))
    for (environment_id, state), count in counts.items():
        if environment_id in environments:
            family = active if state in ACTIVE_STATES else finished
            family.add_metric([*environments[environment_id], state], count)
    yield active
    yield finished


def _waiting_ages(environments: dict[int, tuple[str, str]], now: datetime) -> Iterator[Metric]:
    rows = db.session.execute(
        sa.select(Release.environment_id, Release.state, sa.func.min(Release.created_at),
                  sa.func.min(Release.pending_since))
        .where(Release.state.in_(("QUEUED", "PENDING_APPROVAL"))).group_by(Release.environment_id, Release.state))
    oldest = {(environment_id, state): queued if state == "QUEUED" else pending
              for environment_id, state, queued, pending in rows}
    families = (("QUEUED", GaugeMetricFamily(
                    "releasegate_oldest_queued_age_seconds",
                    "How long the oldest queued release has waited since it was triggered; 0 when none waits.",
                    labels=LABELS)),
                ("PENDING_APPROVAL", GaugeMetricFamily(
                    "releasegate_oldest_pending_approval_age_seconds",
                    "How long the oldest release waiting for approval has waited; 0 when none waits.",
                    labels=LABELS)))
    for state, family in families:
        for environment_id, labels in environments.items():
            since = oldest.get((environment_id, state))
            family.add_metric(labels, max((now - since).total_seconds(), 0.0) if since else 0.0)
        yield family


def _hook_durations() -> dict[int, list[float]]:
    # A hook ends where its release leaves READY (the hook's result, an abort, a lost worker). A
    # release sent back to the queue by an emergency release runs its hook again: its last run counts.
    left_ready = (sa.select(AuditEvent.release_id, sa.func.max(AuditEvent.created_at).label("ended"))
                  .where(AuditEvent.action == "state", AuditEvent.from_state == "READY")
                  .group_by(AuditEvent.release_id).subquery())
    return _durations(sa.select(Release.environment_id, Release.hook_started_at, left_ready.c.ended)
                      .join(left_ready, left_ready.c.release_id == Release.id)
                      .where(Release.hook_started_at.is_not(None)))


def _command_durations() -> dict[int, list[float]]:
    return _durations(sa.select(Release.environment_id, Release.exec_started_at, Release.finished_at)
                      .where(Release.exec_started_at.is_not(None), Release.finished_at.is_not(None)))


def _durations(query) -> dict[int, list[float]]:
    durations: dict[int, list[float]] = defaultdict(list)
    for environment_id, started, ended in db.session.execute(query):
        if ended >= started:
            durations[environment_id].append((ended - started).total_seconds())
    return durations


def _histogram(name: str, documentation: str, buckets: Sequence[float], durations: dict[int, list[float]],
               environments: dict[int, tuple[str, str]]) -> Metric:
    family = HistogramMetricFamily(name, documentation, labels=LABELS)
    for environment_id, labels in environments.items():
        seconds = sorted(durations.get(environment_id, ()))
        cumulative = [(floatToGoString(bound), bisect_right(seconds, bound)) for bound in buckets]
        family.add_metric(labels, [*cumulative, ("+Inf", len(seconds))], sum_value=sum(seconds))
    return family


def _notifications() -> Metric:
    family = GaugeMetricFamily("releasegate_notifications",
                               "Mail and webhook deliveries in the delivery logs, by status (finished ones "
                               "are deleted after NOTIFY_RETENTION_DAYS).", labels=("channel", "status"))
    for channel, model, statuses in (("mail", OutgoingMail, MAIL_STATUSES),
                                     ("webhook", WebhookDelivery, WEBHOOK_STATUSES)):
        counts = dict.fromkeys(statuses, 0)
        counts.update(db.session.execute(sa.select(model.status, sa.func.count()).group_by(model.status)).all())
        for status, count in counts.items():
            family.add_metric([channel, status], count)
    return family


def _from_redis() -> Iterator[Metric]:
    redis = redis_connection()
    totals = dict.fromkeys(REPAIRS, 0)
    totals.update({key.decode(): int(value) for key, value in redis.hgetall(REPAIRS_KEY).items()})
    repairs = CounterMetricFamily("releasegate_reconciler_repairs", "Repairs made by the reconciler, by kind.",
                                  labels=("repair",))
    for repair, count in totals.items():
        repairs.add_metric([repair], count)
    workers = Worker.all(connection=redis)
    heartbeats = GaugeMetricFamily("releasegate_worker_last_heartbeat_timestamp_seconds",
                                   "When each worker registered in Redis last reported (Unix time).",
                                   labels=("worker", "hostname"))
    for worker in sorted(workers, key=lambda worker: worker.name):
        if worker.last_heartbeat is not None:
            heartbeats.add_metric([worker.name, worker.hostname or ""], worker.last_heartbeat.timestamp())
    yield repairs
    yield GaugeMetricFamily("releasegate_workers", "Workers registered in Redis.", value=len(workers))
    yield heartbeats
