"""A test that cannot run here is deselected and counted, never dropped in silence: a run that
names what it may deselect (RELEASEGATE_MAY_DESELECT, as each pass of .ci/run does) fails when a
test would be deselected for another reason."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.fixtures.services import ROOT_DIR

POSTGRES_ONLY = "tests/system/test_group_locks.py"  # every test in it is marked postgresql


def collect(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("TEST_DATABASE_URL", "RELEASEGATE_MAY_DESELECT")}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", POSTGRES_ONLY],
                          cwd=ROOT_DIR, env={**clean, **env}, capture_output=True, text=True, timeout=120)


def test_a_run_counts_what_it_deselects_and_why():
    run = collect()
    assert run.returncode == 5, run.stdout  # nothing ran, nothing failed
    assert "Deselected, as they cannot run here: 4 marked postgresql (needs TEST_DATABASE_URL)" in run.stdout


def test_a_run_that_may_deselect_nothing_fails_naming_the_tests_it_would_drop():
    run = collect(RELEASEGATE_MAY_DESELECT="")
    assert run.returncode == 4  # pytest's usage error: nothing ran
    assert "This run may deselect only tests marked nothing, but 4 more cannot run here:" in run.stderr
    assert "names_it (needs TEST_DATABASE_URL)" in run.stderr


def test_a_run_that_may_deselect_them_runs_the_rest():
    run = collect(RELEASEGATE_MAY_DESELECT="postgresql sandbox")
    assert run.returncode == 5 and "4 deselected" in run.stdout
