"""What the tests of `since` share: the hook's path, a hook that lets releases go, two
resources, a repository's head, a release applied at a commit (released), and a commit written
as a given author (as_author).
"""
from __future__ import annotations

from pathlib import Path

from tests.helpers import git, trigger
from webapp.extensions import db
from webapp.models import Release

HOOK = "svc/pre_release_hooks/pre_release_hook.sh"
GOES = {HOOK: "exit 0\n"}
API = {"resourceType": "service", "resourceName": "api", "resourcePath": "svc/api.json",
       "changeType": "UPDATE_IN_PLACE"}
DB = {"resourceType": "postgres", "resourceName": "orders", "resourcePath": "db/orders.json", "changeType": "CREATE"}


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD")


def released(app, api, run_jobs, commit: str, resources: list | None = None) -> dict:
    """Trigger a release of `commit`, run it to its end, and return what it stored as `since`."""
    release_id = trigger(api, ref=commit, resources=[API] if resources is None else resources)
    run_jobs()
    with app.app_context():
        found = db.session.get(Release, release_id)
        assert found.state == "SUCCEEDED", (found.state, found.error)
        return {"id": release_id, **found.since}


def as_author(repo: Path, name: str, email: str, files: dict, message: str) -> str:
    """Commit `files` written by `name` <`email`>; the tests' own identity commits it."""
    for path, content in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(content)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message, f"--author={name} <{email}>")
    return head(repo)
