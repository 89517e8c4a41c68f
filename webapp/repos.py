"""Git access for releases: a bare mirror per repository in a local cache, commit
resolution, cheap checkouts of a pinned commit and lookup of the pre-release hook.

Questions about objects go to one long-lived `git cat-file --batch` per mirror, and a
checkout is written from its answers (gitobjects.py); `git archive` writes it instead when
git's filters could change the files (.gitattributes, core.autocrlf)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import posixpath
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from . import gitobjects
from .gitobjects import ObjectError, ObjectReader

HOOK_DIR = "pre_release_hooks"
HOOK_NAMES = (("pre_release_hook.py", "py"), ("pre_release_hook.sh", "sh"))
NETWORK_TIMEOUT = 600  # seconds for one clone or fetch
_FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")
# export-ignore / export-subst would make `git archive` differ from the commit's tree.
_ATTRIBUTES = b"* -export-ignore -export-subst\n"
_SYMLINK_HOPS = 8
# Variables that would point git at some other repository than the one we name.
_GIT_LOCATION_VARS = (
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_NAMESPACE",
)


class RepoError(Exception):
    """A problem with a repository or ref; str() is a sentence for the user."""


@dataclass(frozen=True)
class HookScript:
    path: str  # repo-relative path of the regular file read (a symlink's target)
    kind: str  # "py" or "sh", from the hook's name
    blob: str  # git blob sha of the content
    content: bytes


def is_full_commit(ref: str) -> bool:
    """True when `ref` is a full hex object name (SHA-1 or SHA-256)."""
    return bool(_FULL_SHA.fullmatch(ref))


def mirror_path(repo: str, cache_dir: Path) -> Path:
    """The git dir `fetch` keeps for `repo` (it may not exist yet)."""
    digest = hashlib.sha256(repo.encode()).hexdigest()[:24]
    return Path(cache_dir) / f"{digest}.git"


def fetch(repo: str, cache_dir: Path, *, commit: str | None = None,
          max_age: float = 0.0) -> Path:
    """Bring the mirror of `repo` up to date and return its git dir.

    With `commit` (a full sha) already in the mirror, no network fetch happens.
    With `max_age`, a fetch that started less than that many seconds ago is
    taken as fresh enough. Processes waiting on the lock skip their own fetch
    when another one started after they asked.
    """
    asked_at = time.time()
    git_dir = mirror_path(repo, cache_dir)
    if commit and is_full_commit(commit) and has_commit(git_dir, commit):
        return git_dir
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    stamp = git_dir.with_suffix(".fetched")
    with _locked(git_dir.with_suffix(".lock")):
        if not (git_dir / "HEAD").exists():
            _clone(repo, git_dir)
            gitobjects.forget(git_dir)
            stamp.write_text(repr(asked_at))
            return git_dir
        last = _read_stamp(stamp)
        if last >= asked_at or (max_age > 0 and asked_at - last < max_age):
            return git_dir
        started = time.time()
        _run_network(repo, ["git", f"--git-dir={git_dir}", "fetch", "--prune",
                            "--quiet", "origin"], "fetch")
        gitobjects.forget(git_dir)  # belt and braces: the next question starts a fresh reader
        stamp.write_text(repr(started))
    return git_dir


def resolve_commit(git_dir: Path, ref: str) -> str:
    """The full sha of the commit `ref` (branch, tag, full or short sha) names."""
    with _objects(git_dir) as objects:
        sha = objects.resolve(ref)
    if sha is None:
        raise RepoError(f"Ref '{ref}' was not found in repository {_origin(git_dir)}; "
                        "push it or pass a full commit.")
    return sha


def checkout(git_dir: Path, commit: str, dest: Path) -> None:
    """Write exactly the tree of `commit` into the new or empty directory `dest`."""
    _check_commit_arg(commit)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise ValueError(f"checkout destination {dest} is not empty")
    with _objects(git_dir) as objects:
        root = objects.commit_tree(commit)
        if root is None:
            raise RepoError(f"Commit '{commit}' could not be checked out from {_origin(git_dir)}: "
                            "it is not in the repository.")
        files = objects.files(root)
        if _converts_nothing(objects) and not any(name == ".gitattributes" for _, (_, name, _) in files):
            try:
                objects.write(files, dest)
            except OSError as exc:
                raise RepoError(f"Commit '{commit}' could not be checked out: {exc}.") from None
            return
    _archive(git_dir, commit, dest)


def _archive(git_dir: Path, commit: str, dest: Path) -> None:
    """The checkout through `git archive`, which applies git's filters as a checkout would."""
    tar_error = None
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            ["git", f"--git-dir={git_dir}", "archive", "--format=tar", commit],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
            env=_git_env())
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as archive:
                archive.extractall(dest, filter=_extract_filter)
        except tarfile.TarError as exc:
            tar_error = exc
        finally:
            proc.stdout.close()  # unblocks git if extraction stopped early
            returncode = proc.wait()
        if returncode != 0:  # git's reason says more than a truncated archive
            stderr.seek(0)
            raise RepoError(f"Commit '{commit}' could not be checked out from "
                            f"{_origin(git_dir)}: {_last_line(stderr.read())}.")
    if tar_error is not None:
        raise RepoError(f"Commit '{commit}' could not be checked out: {tar_error}.")


def find_hook(git_dir: Path, commit: str, project_name: str) -> HookScript | None:
    """The pre-release hook of `project_name` in the tree of `commit`, or None.

    A symlinked hook is followed while it stays inside the repository and ends
    at a regular file; anything else raises RepoError.
    """
    _check_commit_arg(commit)
    with _objects(git_dir) as objects:
        return _find_hook(objects, git_dir, commit, project_name)


def find_hooks(git_dir: Path, hook_ref: str, commit: str,
               project_name: str) -> tuple[str, HookScript | None, HookScript | None]:
    """(the commit `hook_ref` names, the hook there, the hook at `commit`)."""
    _check_commit_arg(commit)
    with _objects(git_dir) as objects:
        ref_commit = objects.resolve(hook_ref)
        if ref_commit is None:
            raise RepoError(f"Ref '{hook_ref}' was not found in repository {_origin(git_dir)}; "
                            "push it or pass a full commit.")
        return (ref_commit, _find_hook(objects, git_dir, ref_commit, project_name),
                _find_hook(objects, git_dir, commit, project_name))


def _find_hook(objects: ObjectReader, git_dir: Path, commit: str, project_name: str) -> HookScript | None:
    folder = f"{project_name}/{HOOK_DIR}"
    if objects.commit_tree(commit) is None:
        raise RepoError(f"Commit '{commit}' was not found in repository "
                        f"{_origin(git_dir)}; fetch it or pass another commit.")
    entries = objects.folder(commit, folder)
    for name, kind in HOOK_NAMES:
        if name in entries:
            path, blob, content = _follow(objects, commit, f"{folder}/{name}", entries[name])
            return HookScript(path=path, kind=kind, blob=blob, content=content)
    return None


# -- helpers -----------------------------------------------------------------


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARS}
    env["GIT_TERMINAL_PROMPT"] = "0"  # a missing credential fails, never waits
    env["GIT_LITERAL_PATHSPECS"] = "1"
    return env


def _git(git_dir: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args],
                          stdin=subprocess.DEVNULL, capture_output=True, env=_git_env())


def has_commit(git_dir: Path, sha: str) -> bool:
    """Whether the mirror `git_dir` holds the commit `sha` (no network)."""
    if not (git_dir / "HEAD").exists():
        return False
    try:
        with _objects(git_dir) as objects:
            return objects.commit_tree(sha) is not None
    except RepoError:
        return False


@contextlib.contextmanager
def _objects(git_dir: Path) -> Iterator[ObjectReader]:
    """The mirror's long-lived object reader; its failures read as RepoError."""
    try:
        with gitobjects.reader(git_dir, _git_env()) as objects:
            yield objects
    except ObjectError as error:
        raise RepoError(f"The repository {_origin(git_dir)} could not be read: {error}; remove its "
                        f"mirror {git_dir} to have it cloned again.") from None


def _converts_nothing(objects: ObjectReader) -> bool:
    """Whether git's filters could leave a checkout different from the raw blobs (asked once per
    reader): core.autocrlf, or attributes from outside the tree. .gitattributes in the tree are
    looked for in the checkout itself."""
    if objects.converts_nothing is None:
        config = _git(objects.git_dir, "config", "--get-regexp", r"^core\.(autocrlf|attributesfile)$")
        settings = dict(line.partition(" ")[::2] for line in config.stdout.decode(errors="replace").splitlines())
        home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        outside = [Path(home) / "git" / "attributes", Path("/etc/gitattributes"), Path("/usr/local/etc/gitattributes")]
        info = objects.git_dir / "info" / "attributes"
        objects.converts_nothing = (
            settings.get("core.autocrlf", "false").strip().lower() in ("false", "input", "")
            and "core.attributesfile" not in settings
            and not any(path.exists() for path in outside)
            and (not info.exists() or info.read_bytes() == _ATTRIBUTES))
    return objects.converts_nothing


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
        _run_network(repo, ["git", "clone", "--bare", "--quiet", "--", repo, str(tmp)],
                     "clone")
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


def _extract_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    # The 'data' filter refuses symlinks that point outside the checkout; a
    # repository may hold such links, and creating one is harmless: the 'tar'
    # filter still refuses to write any file through it.
    if member.issym():
        member = tarfile.tar_filter(member, dest)
        return member.replace(uid=None, gid=None, uname=None, gname=None, deep=False)
    return tarfile.data_filter(member, dest)


def _check_commit_arg(commit: str) -> None:
    if not commit or commit.startswith("-"):
        raise RepoError(f"'{commit}' is not a commit; pass a full commit sha.")


def _follow(objects: ObjectReader, commit: str, path: str,
            entry: tuple[str, str]) -> tuple[str, str, bytes]:
    """(path, blob, content) of the regular file `path` is or links to."""
    hook = path
    for _ in range(_SYMLINK_HOPS):
        mode, sha = entry
        if mode not in ("100644", "100755", "120000"):
            raise RepoError(f"The pre-release hook {hook} is not a regular file; "
                            "commit the script itself at that path.")
        content = objects.blob(sha)
        if content is None:
            raise RepoError(f"The pre-release hook {hook} could not be read from the repository.")
        if mode != "120000":
            return path, sha, content
        target = content.decode(errors="surrogateescape")
        path = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
        if target.startswith("/") or path == ".." or path.startswith("../"):
            raise RepoError(f"The pre-release hook {hook} is a symlink that leaves the "
                            "repository; commit the script itself at that path.")
        folder, name = posixpath.split(path)
        target_entry = objects.folder(commit, folder).get(name)
        if target_entry is None:
            break
        entry = target_entry
    raise RepoError(f"The pre-release hook {hook} is a symlink that does not resolve "
                    "to a file in the repository; commit the script itself at that path.")
