"""The database unavailable for a moment (issue 5, item 7): the API and the pages answer 503
with a sentence and write nothing, health names the part that is down, and a worker whose
hook finished during the outage records the result once the database is back, without
running the hook again.

PostgreSQL goes away through a TCP proxy that is cut; SQLite is held by another writer.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import CHANGE, Gate, release, state, trigger, wait_for
from tests.outage_support import Outage

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def outage(app_config):
    """Every connection of this module's app (and its worker) goes through the outage."""
    outage = Outage(app_config["SQLALCHEMY_DATABASE_URI"])
    app_config["SQLALCHEMY_DATABASE_URI"] = outage.url
    app_config["SQLITE_BUSY_SECONDS"] = 1
    yield outage
    outage.close()


def count_releases(app) -> int:
    import sqlalchemy as sa

    from webapp.extensions import db

    with app.app_context():
        return db.session.scalar(sa.text("SELECT count(*) FROM releases"))


def test_the_api_answers_503_with_a_sentence_and_writes_nothing_while_the_database_is_down(
        outage, app, api, new_environment):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 0\n"})
    before = count_releases(app)
    with outage.down():
        response = api("dev").post("/api/v1/projects/svc/environments/env/releases", json={"resources": []})
        assert (response.status_code, response.headers["Retry-After"]) == (503, "5")
        assert response.json == {"error": "The database is unavailable right now; try again in a moment."}
        assert "Traceback" not in response.text
    assert count_releases(app) == before
    assert api("dev").post("/api/v1/projects/svc/environments/env/releases", json={"resources": []}).status_code == 202


def test_a_page_form_answers_503_with_a_readable_message_while_the_database_is_down(outage, app, web,
                                                                                      new_environment):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 0\n"})
    client = web("dev")
    before = count_releases(app)
    with outage.down():
        response = client.post("/trigger", data={"csrf_token": client.csrf, "environment": "svc/env",
                                                 "resources": json.dumps(CHANGE)})
        assert response.status_code == 503
        assert "The database is unavailable right now; try again in a moment." in response.text
        assert "Traceback" not in response.text
    assert count_releases(app) == before


def test_health_names_the_database_when_it_cannot_be_reached(outage, app):
    client = app.test_client()
    assert client.get("/api/v1/health").json == {"status": "ok"}
    with outage.down():
        response = client.get("/api/v1/health")
        if outage.sqlite:
            # A writer holding SQLite's lock delays writes, but every read is still served.
            assert (response.status_code, response.json) == (200, {"status": "ok"})
        else:
            assert (response.status_code, response.json) == (503, {"status": "degraded", "failing": ["database"]})
    assert client.get("/api/v1/health").json == {"status": "ok"}


def test_a_hook_that_ends_during_an_outage_is_recorded_once_the_database_is_back_and_never_rerun(
        outage, app_config, api, new_environment, tmp_path, tally):
    log = tmp_path / "worker.log"
    gate = Gate()  # the hook ends when the test opens it: once the database is down
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": (
        f'{tally.send()}\necho "checked"\n{gate.wait()}\nexit 0\n')})
    release_id = trigger(api)
    env = {**os.environ, "DATABASE_URL": outage.url, "REDIS_URL": app_config["REDIS_URL"],
           "REPO_CACHE_DIR": app_config["REPO_CACHE_DIR"], "RELEASEGATE_ENV": "development",
           "SQLITE_BUSY_SECONDS": "1", "RECONCILE_SECONDS": "1",
           # Longer than the outage: a heartbeat missed while the database is away is not a lost worker.
           "WORKER_LOST_SECONDS": "60"}
    with open(log, "wb") as output:
        worker = subprocess.Popen([sys.executable, "-m", "worker"], cwd=ROOT, env=env, stdout=output,
                                  stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: tally.lines and gate.waiting, timeout=60)
        with outage.down():
            gate.open()
            # The worker tried to record the hook's result and met the outage: it says so and waits.
            wait_for(lambda: "database unavailable during record_hook_result" in log.read_text(), timeout=60)
            assert worker.poll() is None
        wait_for(lambda: state(api, release_id) == "SUCCEEDED", timeout=60)
    finally:
        gate.close()
        worker.kill()
        worker.wait(10)
        print(log.read_text())  # shown when the test fails
    assert tally.lines == [str(release_id)]  # the hook ran once
    assert "checked" in release(api, release_id)["hook"]["output"]
    assert "database unavailable during record_hook_result" in log.read_text()
