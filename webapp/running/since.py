"""What changed since an environment's last successful release: the relation of the two
commits, the commits between them, the files they change, and how the resources differ.

Computed by the worker before a release's hook runs, with git's own CLI in the mirror and a
time bound; a failure is recorded as a sentence and never holds the release up.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from . import git

log = logging.getLogger(__name__)

MAX_COMMITS = 250
MAX_FILES = 1000
GIT_SECONDS = 30  # for each git command: what changed must never hold a release up for long


@dataclass(frozen=True)
class Previous:
    """The environment's newest SUCCEEDED release before this one."""

    release_id: int
    commit: str | None
    resources: list


def compute(git_dir: Path, commit: str, previous: Previous | None, resources: list) -> dict:
    """The `since` of a release of `commit` changing `resources`."""
    since = {"previous_release_id": previous.release_id if previous else None,
             "previous_commit": previous.commit if previous else None, "relation": None,
             "commits": [], "commits_truncated": False, "files": [], "files_truncated": False,
             "resources": compare_resources(previous.resources if previous else [], resources), "error": None}
    if previous is None:
        return since
    if not previous.commit:
        since["error"] = (f"Release #{previous.release_id} recorded no commit, so the commits and files since "
                          "it cannot be listed.")
        return since
    try:
        since.update(_history(git_dir, previous.commit, commit))
    except Exception as error:  # noqa: BLE001 - what changed is for people to read: never hold the release up
        if not isinstance(error, git.RepoError):
            log.exception("computing what changed since release #%s failed", previous.release_id)
            error = f"an unexpected {type(error).__name__}; see the worker's log"
        since["error"] = (f"What changed since release #{previous.release_id} could not be computed ({error}); "
                          "compare the commits by hand.")
    return since


def _history(git_dir: Path, before: str, now: str) -> dict:
    if not git.has_commit(git_dir, before, timeout=GIT_SECONDS):
        raise git.RepoError(f"its commit {before[:12]} is no longer in the repository; was history rewritten?")
    if before == now:
        relation = "same"
    elif git.is_ancestor(git_dir, before, now, timeout=GIT_SECONDS):
        relation = "ahead"
    elif git.is_ancestor(git_dir, now, before, timeout=GIT_SECONDS):
        relation = "behind"
    else:
        relation = "diverged"
    commits, truncated = [], False
    if relation in ("ahead", "diverged"):
        commits, truncated = _commits(git_dir, before, now, undone=False, limit=MAX_COMMITS)
    if relation in ("behind", "diverged"):  # what this release takes away again
        undone, more = _commits(git_dir, now, before, undone=True, limit=MAX_COMMITS - len(commits))
        commits, truncated = commits + undone, truncated or more
    files = [] if relation == "same" else git.diff_numstat(git_dir, before, now, timeout=GIT_SECONDS)
    return {"relation": relation, "commits": commits, "commits_truncated": truncated,
            "files": [_file(change) for change in files[:MAX_FILES]], "files_truncated": len(files) > MAX_FILES}


def _commits(git_dir: Path, exclude: str, include: str, *, undone: bool, limit: int) -> tuple[list[dict], bool]:
    if limit <= 0:
        return [], True
    found, more = git.log(git_dir, exclude, include, limit=limit, timeout=GIT_SECONDS)
    return [{"sha": c.sha, "author_name": c.author_name, "author_email": c.author_email,
             "committer_email": c.committer_email, "authored_at": c.authored_at, "subject": c.subject,
             "undone": undone} for c in found], more


def _file(change: git.FileChange) -> dict:
    return {"path": change.path, "added": change.added, "deleted": change.deleted, "binary": change.binary,
            "renamed_from": change.renamed_from}


def compare_resources(before: list, now: list) -> dict:
    """The resources of two releases compared by resourcePath: added, removed, changed (another
    changeType) and the same."""
    old = {r.get("resourcePath"): r for r in before if isinstance(r, dict)}
    new = {r.get("resourcePath"): r for r in now if isinstance(r, dict)}
    changed = [{"path": path, "from": old[path].get("changeType"), "to": new[path].get("changeType")}
               for path in new if path in old and old[path].get("changeType") != new[path].get("changeType")]
    added = [path for path in new if path not in old]
    removed = [path for path in old if path not in new]
    same = [path for path in new if path in old and old[path].get("changeType") == new[path].get("changeType")]
    return {"added": added, "removed": removed, "changed": changed, "same": same,
            "counts": {"added": len(added), "removed": len(removed), "changed": len(changed), "same": len(same)}}
