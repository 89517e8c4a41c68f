"""What changed since the environment's last release, in words: the one-line summary, the
commit authors, the files by folder, links to commits. The release page, the email, the
inbox and the Slack-format webhook all say it the same way. running/since.py computes it."""
from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from datetime import UTC, datetime

from .extensions import db
from .models import Project, Release, utcnow

SEPARATOR = " \u00b7 "
MIGRATION_MARKERS = ("migrations/", "migration/", "/migrate/", "alembic/versions/")


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """"3 days ago", "12 min ago", "just now"."""
    if moment is None:
        return ""
    seconds = max(0, int(((now or utcnow()) - moment).total_seconds()))
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if unit == 'day' and count != 1 else ''} ago"
    return "just now"


NAMES_SAID = 3  # author names in the one-line summary, before "and 2 others"
NAME_CHARS = 40  # an author's name as the summary says it: git lets an author write a page


def authors(commits: list[dict]) -> list[str]:
    """The commits' author names, each once, in the order they first appear."""
    names: list[str] = []
    for commit in commits:
        name = commit.get("author_name") or commit.get("author_email") or "someone"
        if name not in names:
            names.append(name)
    return names


def _by(commits: list[dict]) -> str:
    """"alice, dan and 2 others": the first authors, each name cut short."""
    names = [name if len(name) <= NAME_CHARS else name[:NAME_CHARS - 1] + "\u2026" for name in authors(commits)]
    if len(names) <= NAMES_SAID:
        return ", ".join(names)
    return f"{', '.join(names[:NAMES_SAID])} and {_counted(len(names) - NAMES_SAID, 'other')}"


def _counted(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def previous_line(since: dict) -> str:
    """"Since release #41 (deployed 3 days ago by carol)", or what there was before."""
    previous_id = since.get("previous_release_id")
    if previous_id is None:
        return "First release of this environment"
    previous = db.session.get(Release, previous_id)
    if previous is None:
        return f"Since release #{previous_id}"
    owner = previous.parent.triggered_by if previous.kind == "BOT" and previous.parent else previous.triggered_by
    by = f" by {owner.username}" if owner is not None else ""
    return f"Since release #{previous_id} (deployed {ago(previous.finished_at)}{by})"


def history_phrase(since: dict) -> str:
    """The commits in words: "7 commits by alice, dan", a rollback, a diverged history."""
    commits = since.get("commits") or []
    new = [c for c in commits if not c.get("undone")]
    undone = [c for c in commits if c.get("undone")]
    more = "+" if since.get("commits_truncated") else ""
    relation = since.get("relation")
    if relation == "same":
        return "the same commit"
    if relation == "behind":
        return f"rollback: undoes {_counted(len(undone), 'commit')}{more} by {_by(undone)}"
    if relation == "diverged":
        return (f"history diverged: {_counted(len(new), 'new commit')}, {len(undone)}{more} undone "
                "(a force push?)")
    if relation == "ahead":
        return f"{_counted(len(new), 'commit')}{more} by {_by(new)}"
    return ""


def files_phrase(since: dict) -> str:
    files = since.get("files") or []
    if not files:
        return ""
    added = sum(f.get("added") or 0 for f in files)
    deleted = sum(f.get("deleted") or 0 for f in files)
    more = "+" if since.get("files_truncated") else ""
    return f"{_counted(len(files), 'file')}{more} (+{added} \u2212{deleted})"


def resources_phrase(since: dict) -> str:
    counts = (since.get("resources") or {}).get("counts") or {}
    parts = [f"{counts[key]} {key}" for key in ("added", "removed", "changed") if counts.get(key)]
    return f"resources: {', '.join(parts)}" if parts else ""


def summary(release: Release) -> str | None:
    """"Since release #41 (deployed 3 days ago by carol): 7 commits by alice, dan · 23 files
    (+410 −96) · resources: 2 added, 1 changed"; None until the worker computed it."""
    since = release.since
    if since is None:
        return None
    head = previous_line(since)
    if since.get("error"):
        return f"{head}: what changed could not be computed"
    parts = [part for part in (history_phrase(since), files_phrase(since), resources_phrase(since)) if part]
    return f"{head}: {SEPARATOR.join(parts)}" if parts else head


def is_rollback_or_diverged(since: dict | None) -> bool:
    return bool(since) and since.get("relation") in ("behind", "diverged")


@dataclass
class Folder:
    name: str
    files: list[dict] = field(default_factory=list)

    @property
    def added(self) -> int:
        return sum(f.get("added") or 0 for f in self.files)

    @property
    def deleted(self) -> int:
        return sum(f.get("deleted") or 0 for f in self.files)


def folders(files: list[dict]) -> list[Folder]:
    """The changed files grouped by folder, in order of folder and then path ("" is the top)."""
    grouped: dict[str, Folder] = {}
    for change in sorted(files, key=lambda f: f.get("path", "")):
        name = posixpath.dirname(change.get("path", ""))
        grouped.setdefault(name, Folder(name)).files.append(change)
    return sorted(grouped.values(), key=lambda folder: folder.name)


def highlight(path: str) -> str | None:
    """Why a changed file deserves a reviewer's eye: "migration" or "hook"; None otherwise."""
    if "/pre_release_hooks/" in f"/{path}":
        return "hook"
    if any(marker in f"/{path}" for marker in MIGRATION_MARKERS):
        return "migration"
    return None


def commit_url(project: Project, sha: str) -> str | None:
    """The project's web view of commit `sha` (web_url_template), or None."""
    template = project.web_url_template or ""
    if "{sha}" not in template or not template.startswith(("https://", "http://")):
        return None
    return template.replace("{sha}", sha)


def authored(commit: dict) -> datetime | None:
    """A commit's authored_at (ISO 8601 with its offset) as naive UTC, like every stored time."""
    try:
        moment = datetime.fromisoformat(commit.get("authored_at") or "")
        return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
    except (ValueError, OverflowError, TypeError):  # a date the commit made up (year 9999, -0200)
        return None


def view(release: Release) -> dict | None:
    """What the release page shows of `since`: the summary, the commits with links and ages,
    the files by folder with migrations and hooks marked, the resource comparison."""
    since = release.since
    if since is None:
        return None
    project = release.project
    commits = [{**commit, "short": str(commit.get("sha", ""))[:12], "url": commit_url(project, commit.get("sha", "")),
                "at": authored(commit)} for commit in since.get("commits") or []]
    files = [{**change, "highlight": highlight(change.get("path", ""))} for change in since.get("files") or []]
    return {"summary": summary(release), "warn": is_rollback_or_diverged(since), "relation": since.get("relation"),
            "error": since.get("error"), "commits": commits, "commits_truncated": since.get("commits_truncated"),
            "folders": folders(files), "files_truncated": since.get("files_truncated"),
            "resources": since.get("resources") or {}, "previous_release_id": since.get("previous_release_id")}
