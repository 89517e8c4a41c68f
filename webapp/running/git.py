"""Git for releases, through git's own CLI: a bare mirror per repository, refs resolved to
commits, a commit's tree written into a fresh directory, and the listing of a folder.

Nothing here follows a link of the repository: trees are listed as git stores them, and
checkouts are `git archive | tar -x` into an empty directory (GNU tar never writes through
a link it extracted)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..intake.storable import one_line

NETWORK_TIMEOUT = 600  # seconds for one clone or fetch
LOCAL_TIMEOUT = 300  # seconds for a checkout or a listing
_FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
# export-ignore / export-subst would make `git archive` differ from the commit's tree.
_ATTRIBUTES = b"* -export-ignore -export-subst\n"
# Variables that would point git at some other repository than the one we name.
_GIT_LOCATION_VARS = (
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_NAMESPACE",
)


class RepoError(Exception):
    """A problem with a repository or ref; str() is a sentence for the user."""


@dataclass(frozen=True)
class Entry:
    """One entry of `git ls-tree -r`: a file, a symlink (mode 120000) or a submodule."""

    mode: str
    sha: str

    @property
    def is_symlink(self) -> bool:
        return self.mode == "120000"

    @property
    def is_file(self) -> bool:
        return self.mode in ("100644", "100755")


def is_full_commit(ref: str) -> bool:
    """True when `ref` is a full hex object name (SHA-1 or SHA-256)."""
    return bool(_FULL_SHA.fullmatch(ref))


def mirror_path(repo: str, cache_dir: Path) -> Path:
    """The git dir `fetch` keeps for `repo` (it may not exist yet)."""
    digest = hashlib.sha256(repo.encode()).hexdigest()[:24]
    return Path(cache_dir) / f"{digest}.git"


def fetch(repo: str, cache_dir: Path) -> Path:
    """Bring the mirror of `repo` up to date (cloning it the first time) and return its git dir.

    One process fetches a mirror at a time; one that waited for the lock skips its own fetch
    when another one started after it asked, since that fetch saw everything it would."""
    asked_at = time.time()
    git_dir = mirror_path(repo, cache_dir)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    stamp = git_dir.with_suffix(".fetched")
    with _locked(git_dir.with_suffix(".lock")):
        if _read_stamp(stamp) >= asked_at and (git_dir / "HEAD").exists():
            return git_dir
        started = time.time()
        if (git_dir / "HEAD").exists():
            _run_network(repo, ["git", f"--git-dir={git_dir}", "fetch", "--prune", "--quiet", "origin"], "fetch")
        else:
            _clone(repo, git_dir)
        stamp.write_text(repr(started))
    return git_dir


def mirror_with(repo: str, cache_dir: Path, commit: str | None) -> Path:
    """The mirror, fetched unless it already holds `commit` (a full sha): a release's own
    pinned commit never changes, so it needs no fetch."""
    git_dir = mirror_path(repo, cache_dir)
    if commit and is_full_commit(commit) and has_commit(git_dir, commit):
        return git_dir
    return fetch(repo, cache_dir)


def has_commit(git_dir: Path, sha: str, *, timeout: float | None = None) -> bool:
    """Whether the mirror `git_dir` holds the commit `sha` (no network)."""
    if not (git_dir / "HEAD").exists():
        return False
    return _git(git_dir, "cat-file", "-e", f"{sha}^{{commit}}", timeout=timeout).returncode == 0


def resolve_commit(git_dir: Path, ref: str) -> str:
    """The full sha of the commit `ref` (branch, tag, full or short sha) names."""
    # A branch before a tag of the same name (git itself tries tags first): whoever may push a
    # tag called `main` must not choose the hook ref's commit.
    names = [ref] if is_full_commit(ref) or ref.startswith("refs/") else [f"refs/heads/{ref}", f"refs/tags/{ref}", ref]
    for name in names if ref and not ref.startswith("-") else ():
        proc = _git(git_dir, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{name}^{{commit}}")
        if proc.returncode == 0:
            return proc.stdout.decode().strip()
    raise RepoError(f"Ref '{ref}' was not found in repository {_origin(git_dir)}; push it or pass a full commit.")


def checkout(git_dir: Path, commit: str, dest: Path, paths: tuple[str, ...] = ()) -> None:
    """Write the tree of `commit` (or only `paths` of it) into the new or empty directory `dest`,
    through `git archive`, which applies git's filters (LFS, eol) as a checkout would."""
    _check_commit_arg(commit)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise ValueError(f"checkout destination {dest} is not empty")
    # ^{commit}: a tree's or a tag's name is not a commit under review.
    archive = subprocess.Popen(["git", f"--git-dir={git_dir}", "archive", "--format=tar", f"{commit}^{{commit}}", "--",
                                *paths],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=_git_env())
    try:
        # GNU tar refuses names with '..' and never writes through a link it extracted.
        tar = subprocess.run(["tar", "-x", "--no-same-owner", "-C", str(dest), "-f", "-"], stdin=archive.stdout,
                             capture_output=True, timeout=LOCAL_TIMEOUT)
    except subprocess.TimeoutExpired:
        archive.kill()
        raise RepoError(f"Commit '{commit}' could not be checked out within {LOCAL_TIMEOUT} s.") from None
    finally:
        archive.stdout.close()
        archive_stderr = archive.stderr.read()
        archive.stderr.close()
        archive.wait()
    if archive.returncode != 0:  # git's reason says more than a truncated archive
        raise RepoError(f"Commit '{commit}' could not be checked out from {_origin(git_dir)}: "
                        f"{_last_line(archive_stderr)}.")
    if tar.returncode != 0:
        raise RepoError(f"Commit '{commit}' could not be checked out: {_last_line(tar.stderr)}.")


def list_folder(git_dir: Path, commit: str, folder: str) -> dict[str, Entry]:
    """Every entry at or under `folder` in the tree of `commit`, by path, as git stores it: a
    symlink is listed as a link, never followed."""
    _check_commit_arg(commit)
    proc = _git(git_dir, "ls-tree", "-r", "-z", "--full-tree", f"{commit}^{{commit}}", "--", folder)
    if proc.returncode != 0:
        raise RepoError(f"Commit '{commit}' was not found in repository {_origin(git_dir)}; "
                        "fetch it or pass another commit.")
    entries = {}
    for record in proc.stdout.split(b"\0"):
        if record:
            meta, _, path = record.partition(b"\t")
            mode, _kind, sha = meta.decode().split()
            entries[path.decode(errors="surrogateescape")] = Entry(mode, sha)
    return entries


KEPT_REFS = "refs/releasegate/kept"


def keep(git_dir: Path, commit: str) -> None:
    """Keep `commit` in the mirror under a ref of our own, whatever the repository does later: a
    force push or a deleted branch must not take a deployed commit away before the next release
    compares itself with it (`fetch --prune` prunes only refs/heads and refs/tags). Best effort: a
    ref another worker is writing at the same moment is that worker's to keep."""
    if not is_full_commit(commit):
        return
    with contextlib.suppress(RepoError):  # timed out: the release goes on; only a later comparison may miss it
        _git(git_dir, "update-ref", f"{KEPT_REFS}/{commit}", commit)


def is_ancestor(git_dir: Path, ancestor: str, descendant: str, *, timeout: float | None = None) -> bool:
    """Whether commit `ancestor` is `descendant` or one of its ancestors."""
    _check_commit_arg(ancestor)
    _check_commit_arg(descendant)
    proc = _git(git_dir, "merge-base", "--is-ancestor", ancestor, descendant, timeout=timeout)
    if proc.returncode not in (0, 1):
        raise RepoError(f"git could not compare {ancestor[:12]} with {descendant[:12]}: {_last_line(proc.stderr)}.")
    return proc.returncode == 0


@dataclass(frozen=True)
class Commit:
    sha: str
    author_name: str
    author_email: str
    committer_email: str
    authored_at: str  # ISO 8601 with its offset, as git has it
    subject: str


# Fields apart by NUL, the one byte git keeps in no name, address or subject: any other (a
# unit separator, say) can be written into an author's name and move the addresses out of
# their fields, past the authors_may_not_approve check. -z ends each commit with one more NUL.
_LOG_FIELDS = ("%H", "%an", "%ae", "%ce", "%aI", "%s")
_LOG_FORMAT = "%x00".join(_LOG_FIELDS)


def log(git_dir: Path, exclude: str, include: str, *, limit: int,
        timeout: float | None = None) -> tuple[list[Commit], bool]:
    """`git log exclude..include`, newest first: at most `limit` commits, and whether there were more."""
    _check_commit_arg(exclude)
    _check_commit_arg(include)
    proc = _git(git_dir, "log", "-z", "--no-show-signature", f"--format={_LOG_FORMAT}", f"--max-count={limit + 1}",
                f"{exclude}..{include}", "--", timeout=timeout)
    if proc.returncode != 0:
        raise RepoError(f"git log {exclude[:12]}..{include[:12]} failed: {_last_line(proc.stderr)}.")
    # a subject or an author name is one line, whatever the committer put in it (a carriage
    # return would start a line of its own in a text mail or a chat message)
    fields, width = [field.decode(errors="replace") for field in proc.stdout.split(b"\0")[:-1]], len(_LOG_FIELDS)
    if len(fields) % width:
        raise RepoError(f"git log {exclude[:12]}..{include[:12]} answered in a form Releasegate does not read.")
    commits = [Commit(sha, one_line(name), email, committer, at, one_line(subject))
               for sha, name, email, committer, at, subject
               in (fields[start:start + width] for start in range(0, len(fields), width))]
    return commits[:limit], len(commits) > limit


@dataclass(frozen=True)
class FileChange:
    path: str
    added: int | None  # None for a binary file
    deleted: int | None
    renamed_from: str | None = None

    @property
    def binary(self) -> bool:
        return self.added is None


def diff_numstat(git_dir: Path, old: str, new: str, *, timeout: float | None = None) -> list[FileChange]:
    """`git diff --numstat -M old new`: every file changed, with its lines added and deleted."""
    _check_commit_arg(old)
    _check_commit_arg(new)
    proc = _git(git_dir, "diff", "--numstat", "-z", "-M", "--no-color", "--no-ext-diff", "--no-textconv",
                f"{old}^{{commit}}", f"{new}^{{commit}}", "--", timeout=timeout)
    if proc.returncode != 0:
        raise RepoError(f"git diff {old[:12]} {new[:12]} failed: {_last_line(proc.stderr)}.")
    fields = proc.stdout.split(b"\0")
    changes, index = [], 0
    while index < len(fields) and fields[index]:
        added, deleted, path = fields[index].split(b"\t", 2)
        renamed_from = None
        if not path:  # a rename: the old and the new path follow as fields of their own
            renamed_from, path = fields[index + 1], fields[index + 2]
            index += 2
        index += 1
        changes.append(FileChange(_text(path), None if added == b"-" else int(added),
                                  None if deleted == b"-" else int(deleted),
                                  _text(renamed_from) if renamed_from is not None else None))
    return changes


def _text(path: bytes) -> str:
    return path.decode(errors="backslashreplace")  # storable and shown as git would quote it


# -- helpers -----------------------------------------------------------------


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARS}
    env["GIT_TERMINAL_PROMPT"] = "0"  # a missing credential fails, never waits
    env["GIT_LITERAL_PATHSPECS"] = "1"
    return env


def _git(git_dir: Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[bytes]:
    timeout = LOCAL_TIMEOUT if timeout is None else timeout  # read when called: tests shorten it
    try:
        return subprocess.run(["git", f"--git-dir={git_dir}", *args], stdin=subprocess.DEVNULL,
                              capture_output=True, env=_git_env(), timeout=timeout)
    except subprocess.TimeoutExpired:
        # No path in the sentence: it is shown to every user, and the mirror's place is the operator's.
        raise RepoError(f"git {args[0]} took longer than {timeout:g} s in the repository's mirror; "
                        "pass a simpler ref or a full commit.") from None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path`, so one process fetches at a time."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _clone(repo: str, git_dir: Path) -> None:
    # Clone beside the final place and rename, so a failed clone leaves nothing.
    tmp = git_dir.with_name(f"{git_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _run_network(repo, ["git", "clone", "--bare", "--quiet", "--", repo, str(tmp)], "clone")
        # A bare clone has no fetch refspec; branches and tags are all we need.
        with open(tmp / "config", "a") as config:
            config.write('[remote "origin"]\n')
            config.writelines(f"\tfetch = {spec}\n" for spec in _REFSPECS)
        (tmp / "info").mkdir(exist_ok=True)
        (tmp / "info" / "attributes").write_bytes(_ATTRIBUTES)
        shutil.rmtree(git_dir, ignore_errors=True)  # a leftover without HEAD
        os.rename(tmp, git_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run_network(repo: str, argv: list[str], verb: str) -> None:
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              env=_git_env(), timeout=NETWORK_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RepoError(f"Could not {verb} repository {_redact(repo)}: no answer within "
                        f"{NETWORK_TIMEOUT} s; check that this worker can reach it.") from None
    if proc.returncode != 0:
        raise RepoError(f"Could not {verb} repository {_redact(repo)}: "
                        f"{_last_line(proc.stderr)}; check the project's repository "
                        "setting and that this worker can reach it.")


def _read_stamp(stamp: Path) -> float:
    try:
        return float(stamp.read_text())
    except (OSError, ValueError):
        return 0.0


def _last_line(stderr: bytes) -> str:
    lines = [ln.strip() for ln in stderr.decode(errors="replace").splitlines() if ln.strip()]
    return _redact_text(lines[-1].rstrip(".")) if lines else "git gave no reason"


def _redact(repo: str) -> str:
    """`repo` without a password or token in its URL."""
    parts = urlsplit(repo)
    if parts.scheme and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit(parts._replace(netloc=f"***@{host}"))
    return repo


def _redact_text(text: str) -> str:
    return re.sub(r"(\w+://)[^/\s@]+@", r"\1***@", text)


def _origin(git_dir: Path) -> str:
    proc = _git(git_dir, "config", "--get", "remote.origin.url")
    url = proc.stdout.decode(errors="replace").strip()
    return _redact(url) if proc.returncode == 0 and url else str(git_dir)


def _check_commit_arg(commit: str) -> None:
    if not commit or commit.startswith("-"):
        raise RepoError(f"'{commit}' is not a commit; pass a full commit sha.")
