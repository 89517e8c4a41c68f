"""A mirror's objects, read without a git process per question: one long-lived
`git cat-file --batch` per mirror, a bounded cache of immutable objects (trees and small blobs,
by sha), and a commit's tree written out as files.

Objects never change under a sha, so the cache never goes stale; refs are not cached (git
reads them afresh for every question, and finds objects a later fetch added).
"""
from __future__ import annotations

import collections
import contextlib
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

MAX_READERS = 8  # mirrors with a reader at once, least recently used closed first
TREE_CACHE_ITEMS = 4096
BLOB_CACHE_BYTES = 16 << 20
BLOB_CACHE_ITEM = 256 << 10  # larger blobs are streamed to their file, not kept
PIPELINED = 48  # requests written before their answers are read: under 4 KiB, a pipe's least
_CHUNK = 1 << 20
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

Entry = tuple[str, str, str]  # mode, name, sha


class ObjectError(Exception):
    """The mirror does not hold what was asked, or holds something unusable; str() says which."""


class _Cache:
    """Trees (parsed) and small blobs by sha, least recently used dropped first."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.trees: collections.OrderedDict[str, list[Entry]] = collections.OrderedDict()
        self.blobs: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self.blob_bytes = 0
        self.commit_trees: collections.OrderedDict[str, str] = collections.OrderedDict()

    def get(self, table: collections.OrderedDict, sha: str):
        with self.lock:
            value = table.get(sha)
            if value is not None:
                table.move_to_end(sha)
            return value

    def put_tree(self, sha: str, entries: list[Entry]) -> None:
        with self.lock:
            self.trees[sha] = entries
            while len(self.trees) > TREE_CACHE_ITEMS:
                self.trees.popitem(last=False)

    def put_commit(self, sha: str, tree: str) -> None:
        with self.lock:
            self.commit_trees[sha] = tree
            while len(self.commit_trees) > TREE_CACHE_ITEMS:
                self.commit_trees.popitem(last=False)

    def put_blob(self, sha: str, content: bytes) -> None:
        if len(content) > BLOB_CACHE_ITEM:
            return
        with self.lock:
            if sha in self.blobs:
                return
            self.blobs[sha] = content
            self.blob_bytes += len(content)
            while self.blob_bytes > BLOB_CACHE_BYTES:
                self.blob_bytes -= len(self.blobs.popitem(last=False)[1])


CACHE = _Cache()


class ObjectReader:
    """One `git cat-file --batch` process on one mirror; use it under `lock`."""

    def __init__(self, git_dir: Path, env: dict[str, str]) -> None:
        self.git_dir = Path(git_dir)
        self.identity = _identity(self.git_dir)
        self.owner = os.getpid()
        self.lock = threading.Lock()
        self.converts_nothing: bool | None = None  # set by repos: may a checkout skip git's filters?
        self.commits: set[str] = set()  # commits found in this mirror (the cache holds every mirror's)
        self.proc = subprocess.Popen(["git", f"--git-dir={git_dir}", "cat-file", "--batch"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env)

    @property
    def usable(self) -> bool:
        """Still running, in this process, on the same directory (a re-clone replaces it)."""
        return (self.owner == os.getpid() and self.proc.poll() is None
                and _identity(self.git_dir) == self.identity)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        self.proc.stdout.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    # -- questions --------------------------------------------------------------------------

    def read(self, name: str) -> tuple[str, str, bytes] | None:
        """(sha, type, content) of the object `name` (a sha, or a ref expression), or None."""
        if not self._ask([name]):
            return None
        header = self._header()
        if header is None:
            return None
        sha, kind, size = header
        content = self._content(size)
        if kind == "blob":
            CACHE.put_blob(sha, content)
        return sha, kind, content

    def resolve(self, ref: str) -> str | None:
        """The full sha of the commit `ref` names, or None (as `rev-parse --verify ref^{commit}`)."""
        if not ref or ref.startswith("-") or "\n" in ref or "\0" in ref:
            return None
        found = self.read(f"{ref}^{{commit}}")
        if found is None or found[1] != "commit":
            return None
        CACHE.put_commit(found[0], _tree_of(found[2]))
        return found[0]

    def commit_tree(self, commit: str) -> str | None:
        """The root tree of the full sha `commit`, or None when this mirror has no such commit."""
        tree = CACHE.get(CACHE.commit_trees, commit) if commit in self.commits else None
        if tree is not None:
            return tree
        found = self.read(f"{commit}^{{commit}}")
        if found is None or found[0] != commit or found[1] != "commit":
            return None
        if len(self.commits) > TREE_CACHE_ITEMS:
            self.commits.clear()
        self.commits.add(commit)
        tree = _tree_of(found[2])
        CACHE.put_commit(commit, tree)
        return tree

    def tree(self, sha: str) -> list[Entry]:
        entries = CACHE.get(CACHE.trees, sha)
        if entries is None:
            found = self.read(sha)
            if found is None or found[1] != "tree":
                raise ObjectError(f"tree {sha} is missing from the repository")
            entries = _parse_tree(found[2], len(sha) // 2)
            CACHE.put_tree(sha, entries)
        return entries

    def folder(self, commit: str, path: str) -> dict[str, tuple[str, str]]:
        """{name: (mode, sha)} of the folder `path` of `commit`; {} when it is not one."""
        sha = self.commit_tree(commit)
        for part in filter(None, path.split("/")):
            if sha is None:
                return {}
            sha = next((s for mode, name, s in self.tree(sha) if name == part and mode == "40000"), None)
        return {name: (mode, s) for mode, name, s in self.tree(sha)} if sha else {}

    def blob(self, sha: str) -> bytes | None:
        content = CACHE.get(CACHE.blobs, sha)
        if content is not None:
            return content
        found = self.read(sha)
        return found[2] if found is not None and found[1] == "blob" else None

    # -- a checkout -------------------------------------------------------------------------

    def files(self, root: str) -> list[tuple[str, Entry]]:
        """Every entry under the tree `root`, parents before children: (folder, entry)."""
        listed, folders = [], [("", root)]
        while folders:
            folder, sha = folders.pop()
            for mode, name, entry_sha in self.tree(sha):
                if name in ("", ".", "..") or "/" in name or "\0" in name:
                    raise ObjectError(f"the tree holds an entry named {name!r}, which cannot be a file name")
                listed.append((folder, (mode, name, entry_sha)))
                if mode == "40000":
                    folders.append((f"{folder}{name}/", entry_sha))
        return listed

    def write(self, files: list[tuple[str, Entry]], dest: Path) -> None:
        """Write `files` (from files()) into the empty directory `dest`, never through a link:
        every name is opened relative to a directory we made, without following symlinks."""
        folders = {"": os.open(dest, _DIRECTORY)}
        blobs: list[tuple[str, int, str, int]] = []  # sha, folder fd, name, mode
        links: list[tuple[str, int, str]] = []
        try:
            for folder, (mode, name, sha) in files:
                parent = folders[folder]
                if mode in ("40000", "160000"):  # a submodule reads as an empty folder, as in git archive
                    os.mkdir(name, 0o755, dir_fd=parent)
                    fd = os.open(name, _DIRECTORY, dir_fd=parent)
                    os.fchmod(fd, 0o755)
                    if mode == "40000":
                        folders[f"{folder}{name}/"] = fd
                    else:
                        os.close(fd)
                elif mode == "120000":
                    links.append((sha, parent, name))
                elif mode.startswith("100"):
                    blobs.append((sha, parent, name, 0o755 if int(mode, 8) & 0o111 else 0o644))
                else:
                    raise ObjectError(f"the entry {folder}{name} has a mode ({mode}) git does not check out")
            self._write_blobs(blobs)
            for sha, parent, name in links:
                target = self.blob(sha)
                if target is None:
                    raise ObjectError(f"the symlink {name} points at a missing object")
                os.symlink(os.fsdecode(target), name, dir_fd=parent)
        finally:
            for fd in folders.values():
                os.close(fd)

    def _write_blobs(self, blobs: list[tuple[str, int, str, int]]) -> None:
        missing = []
        for item in blobs:
            content = CACHE.get(CACHE.blobs, item[0])
            if content is None:
                missing.append(item)
            else:
                _write_file(item[1], item[2], item[3], [content])
        for start in range(0, len(missing), PIPELINED):  # several questions in flight at once
            batch = missing[start:start + PIPELINED]
            if not self._ask([sha for sha, *_ in batch]):
                raise ObjectError("git stopped answering")
            for sha, parent, name, mode in batch:
                header = self._header()
                if header is None or header[1] != "blob":  # the reader is dropped: no need to drain
                    raise ObjectError(f"blob {sha} of {name} is missing from the repository")
                size = header[2]
                if size <= BLOB_CACHE_ITEM:
                    content = self._content(size)
                    CACHE.put_blob(sha, content)
                    _write_file(parent, name, mode, [content])
                else:
                    _write_file(parent, name, mode, self._stream(size))

    # -- the protocol -----------------------------------------------------------------------

    def _ask(self, names: list[str]) -> bool:
        try:
            self.proc.stdin.write(b"".join(n.encode(errors="surrogateescape") + b"\n" for n in names))
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, ValueError):  # git could not open the repository, or exited
            return False

    def _header(self) -> tuple[str, str, int] | None:
        line = self.proc.stdout.readline()
        if not line:
            raise ObjectError("git stopped answering")
        parts = line.split()
        if len(parts) != 3:  # "<name> missing" or "<name> ambiguous"
            return None
        return parts[0].decode(), parts[1].decode(), int(parts[2])

    def _content(self, size: int) -> bytes:
        content = self.proc.stdout.read(size + 1)
        if len(content) != size + 1:
            raise ObjectError("git stopped answering")
        return content[:-1]

    def _stream(self, size: int) -> Iterator[bytes]:
        left = size
        while left:
            chunk = self.proc.stdout.read(min(left, _CHUNK))
            if not chunk:
                raise ObjectError("git stopped answering")
            left -= len(chunk)
            yield chunk
        self.proc.stdout.read(1)


_readers: collections.OrderedDict[str, ObjectReader] = collections.OrderedDict()
_readers_lock = threading.Lock()


@contextlib.contextmanager
def reader(git_dir: Path, env: dict[str, str]) -> Iterator[ObjectReader]:
    """The long-lived reader of `git_dir`, held for the duration of the block."""
    key, stale = str(git_dir), []
    with _readers_lock:
        found = _readers.pop(key, None)
        if found is not None and not found.usable:
            stale.append(found)
            found = None
        if found is None:
            found = ObjectReader(git_dir, env)
        _readers[key] = found
        while len(_readers) > MAX_READERS:
            stale.append(_readers.popitem(last=False)[1])
    for old in stale:
        with old.lock:
            old.close()
    with found.lock:
        if found.proc.poll() is not None:
            raise ObjectError("git could not read the repository")
        try:
            yield found
        except ObjectError:
            forget(git_dir)  # its answers may be out of step now: start afresh next time
            raise


def forget(git_dir: Path) -> None:
    """Close the reader of `git_dir` (after a fetch or clone in this process: start afresh)."""
    with _readers_lock:
        found = _readers.pop(str(git_dir), None)
    if found is not None:
        found.close()


def _identity(git_dir: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(git_dir)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _tree_of(commit: bytes) -> str:
    first = commit.split(b"\n", 1)[0]
    if not first.startswith(b"tree "):
        raise ObjectError("a commit without a tree")
    return first[5:].decode()


def _parse_tree(data: bytes, sha_size: int) -> list[Entry]:
    entries, at = [], 0
    while at < len(data):
        space, nul = data.index(b" ", at), data.index(b"\0", at)
        entries.append((data[at:space].decode(), data[space + 1:nul].decode(errors="surrogateescape"),
                        data[nul + 1:nul + 1 + sha_size].hex()))
        at = nul + 1 + sha_size
    return entries


def _write_file(folder: int, name: str, mode: int, chunks) -> None:
    fd = os.open(name, _NEW_FILE, mode, dir_fd=folder)
    try:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
        os.fchmod(fd, mode)  # exactly, whatever the umask
    finally:
        os.close(fd)
