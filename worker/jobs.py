"""RQ jobs: imperative verbs taking release ids. They re-read the release and do
nothing unless it is in the state they expect."""
from __future__ import annotations

from webapp import runner


def run_pre_release_hook(release_id: int) -> None:
    runner.run_pre_release_hook(release_id)


def execute_release(release_id: int) -> None:
    runner.execute_release(release_id)
