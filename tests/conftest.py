"""Fixtures: a real Redis server, a database built by the migrations, real git repos.

The schema is migrated once per session into a template; each test gets a fresh copy
(a file copy on SQLite, CREATE DATABASE … TEMPLATE on PostgreSQL), so tests that
start worker processes see committed data and nothing leaks between tests. Set
TEST_DATABASE_URL=postgresql+psycopg://… to run the suite on PostgreSQL.

The tests mirror the code: unit/, web/ (with the browser's fixtures in its conftest), worker/
and system/. The fixtures they share are in tests/fixtures/ (services, people, processes); this
file loads them and decides which tests cannot run here (deselected and counted, never skipped).
"""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.fixtures")  # imported below, before pytest loads them as plugins
from tests.fixtures.services import HOOK_SANDBOX, POSTGRES_URL  # noqa: E402

# The shared fixtures, by what they stand up (tests/fixtures/); web/conftest.py adds the browser's.
pytest_plugins = ["tests.fixtures.services", "tests.fixtures.people", "tests.fixtures.processes"]
SPEC_BESIDE = (Path(__file__).resolve().parents[2] / "shared" / "SPEC.md").is_file()  # the contract, as in CI


# Why a marked test cannot run here; each is deselected, counted in the summary, never skipped.
NOT_HERE = {"postgresql": "needs TEST_DATABASE_URL", "root": "switches users, so needs root",
            "sandbox": "needs the sandbox, which HOOK_SANDBOX=none turns off",
            "spec": "needs ../shared/SPEC.md beside the checkout"}
# What a run may deselect, when it says (.ci/run does, for each pass): "postgresql sandbox", or ""
# for none. A test deselected for another reason then fails the run instead of vanishing from it.
MAY_DESELECT = os.environ.get("RELEASEGATE_MAY_DESELECT")
DESELECTED = pytest.StashKey[Counter]()


def why_not_here(item) -> str | None:
    """The marker that keeps `item` from running here, or None: `postgresql` (the soak) on
    SQLite, `root` (switching users) when not run as root, as CI is, `sandbox` when the suite
    runs with HOOK_SANDBOX=none, `spec` (held to the shared contract) when ../shared/SPEC.md is
    not beside the checkout, as it is in CI."""
    if item.get_closest_marker("postgresql") and not POSTGRES_URL:
        return "postgresql"
    if item.get_closest_marker("sandbox") and HOOK_SANDBOX == "none":
        return "sandbox"
    if item.get_closest_marker("spec") and not SPEC_BESIDE:
        return "spec"
    if item.get_closest_marker("root") and os.geteuid() != 0:
        return "root"
    return None


def pytest_collection_modifyitems(config, items):
    why = {item.nodeid: why_not_here(item) for item in items}
    deselected = [item for item in items if why[item.nodeid]]
    config.stash[DESELECTED] = Counter(why[item.nodeid] for item in deselected)
    if MAY_DESELECT is not None:
        wrong = [f"{item.nodeid} ({NOT_HERE[why[item.nodeid]]})" for item in deselected
                 if why[item.nodeid] not in MAY_DESELECT.split()]
        if wrong:
            raise pytest.UsageError(f"This run may deselect only tests marked {MAY_DESELECT or 'nothing'}, but "
                                    f"{len(wrong)} more cannot run here:\n  " + "\n  ".join(wrong))
    if deselected:
        items[:] = [item for item in items if not why[item.nodeid]]
        config.hook.pytest_deselected(items=deselected)


def pytest_terminal_summary(terminalreporter, config):
    counts = config.stash.get(DESELECTED, Counter())
    if counts:
        terminalreporter.write_line("Deselected, as they cannot run here: " + "; ".join(
            f"{count} marked {marker} ({NOT_HERE[marker]})" for marker, count in sorted(counts.items())))
