"""webapp.repos against real git repositories made in each test."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from webapp import repos
from webapp.repos import HookScript, RepoError

GIT = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com",
       "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"]


def git(repo: Path, *args: str) -> str:
    proc = subprocess.run([*GIT, "-C", str(repo), *args], capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def commit(repo: Path, files: dict[str, str | None], message: str = "change") -> str:
    """Write (or, for None, delete) files, commit them all and return the new sha."""
    for name, content in files.items():
        path = repo / name
        if content is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def symlink(repo: Path, name: str, target: str) -> None:
    path = repo / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    repo = tmp_path / "source"
    repo.mkdir()
    git(repo, "init", "-q")
    commit(repo, {"README": "hello\n", "bin/deploy.sh": "#!/bin/sh\necho deploy\n"}, "initial")
    (repo / "bin" / "deploy.sh").chmod(0o755)
    commit(repo, {}, "make deploy.sh executable")
    return repo


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def test_fetch_clones_a_local_path_into_a_bare_mirror(source, cache):
    git_dir = repos.fetch(str(source), cache)
    assert git_dir.parent == cache and git_dir == repos.mirror_path(str(source), cache)
    assert (git_dir / "HEAD").is_file() and not (git_dir / "README").exists()
    assert repos.resolve_commit(git_dir, "main") == git(source, "rev-parse", "HEAD")


def test_fetch_again_picks_up_a_new_commit_and_a_new_branch(source, cache):
    git_dir = repos.fetch(str(source), cache)
    new = commit(source, {"README": "changed\n"})
    git(source, "branch", "feature/x")
    assert repos.fetch(str(source), cache) == git_dir
    assert repos.resolve_commit(git_dir, "main") == new
    assert repos.resolve_commit(git_dir, "feature/x") == new


def test_fetch_skips_the_network_for_a_commit_already_in_the_mirror(source, cache):
    git_dir = repos.fetch(str(source), cache)
    known = git(source, "rev-parse", "HEAD")
    commit(source, {"README": "later\n"})
    repos.fetch(str(source), cache, commit=known)
    assert repos.resolve_commit(git_dir, "main") == known  # no fetch happened
    newer = git(source, "rev-parse", "HEAD")
    repos.fetch(str(source), cache, commit=newer)  # unknown commit: fetches
    assert repos.resolve_commit(git_dir, "main") == newer


def test_fetch_of_an_unreachable_repository_names_it(tmp_path, cache):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(RepoError, match="Could not clone repository .*nowhere"):
        repos.fetch(missing, cache)
    assert not repos.mirror_path(missing, cache).exists()


def test_resolve_commit_accepts_branch_tag_short_and_full_sha(source, cache):
    head = git(source, "rev-parse", "HEAD")
    git(source, "tag", "-a", "v1", "-m", "v1")
    git_dir = repos.fetch(str(source), cache)
    assert repos.resolve_commit(git_dir, "main") == head
    assert repos.resolve_commit(git_dir, "refs/heads/main") == head
    assert repos.resolve_commit(git_dir, "v1") == head  # annotated tag peeled to its commit
    assert repos.resolve_commit(git_dir, head[:8]) == head
    assert repos.resolve_commit(git_dir, head) == head


@pytest.mark.parametrize("ref", ["feature/x", "0" * 40, "--all", ""])
def test_resolve_commit_of_an_unknown_ref_names_the_ref(source, cache, ref):
    git_dir = repos.fetch(str(source), cache)
    with pytest.raises(RepoError) as caught:
        repos.resolve_commit(git_dir, ref)
    assert str(caught.value) == (f"Ref '{ref}' was not found in repository {source}; "
                                 "push it or pass a full commit.")


def test_checkout_writes_exactly_the_commits_tree_with_exec_bits_and_symlinks(source, cache, tmp_path):
    symlink(source, "docs/readme-link", "../README")
    commit(source, {".gitattributes": "README export-ignore\n"})
    pinned = commit(source, {"gone.txt": "soon removed\n"})
    commit(source, {"gone.txt": None, "later.txt": "not in the pinned commit\n"})
    git_dir = repos.fetch(str(source), cache)
    dest = tmp_path / "checkout"
    repos.checkout(git_dir, pinned, dest)
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if not p.is_dir())
    assert files == [".gitattributes", "README", "bin/deploy.sh", "docs/readme-link", "gone.txt"]
    assert os.stat(dest / "bin" / "deploy.sh").st_mode & stat.S_IXUSR
    assert not os.stat(dest / "README").st_mode & stat.S_IXUSR
    assert os.readlink(dest / "docs" / "readme-link") == "../README"
    assert (dest / "docs" / "readme-link").read_text() == "hello\n"


def test_checkout_of_an_unknown_commit_raises(source, cache, tmp_path):
    git_dir = repos.fetch(str(source), cache)
    with pytest.raises(RepoError, match="could not be checked out"):
        repos.checkout(git_dir, "0" * 40, tmp_path / "checkout")


HOOKS = "shop/pre_release_hooks"


def test_find_hook_prefers_py_over_sh(source, cache):
    both = commit(source, {f"{HOOKS}/pre_release_hook.py": "exit(0)\n",
                           f"{HOOKS}/pre_release_hook.sh": "exit 0\n"})
    only_sh = commit(source, {f"{HOOKS}/pre_release_hook.py": None})
    git_dir = repos.fetch(str(source), cache)
    found = repos.find_hook(git_dir, both, "shop")
    blob = git(source, "rev-parse", f"{both}:{HOOKS}/pre_release_hook.py")
    assert found == HookScript(path=f"{HOOKS}/pre_release_hook.py", kind="py", blob=blob,
                               content=b"exit(0)\n")
    found = repos.find_hook(git_dir, only_sh, "shop")
    assert (found.path, found.kind, found.content) == (f"{HOOKS}/pre_release_hook.sh", "sh", b"exit 0\n")


def test_find_hook_returns_none_without_a_hook(source, cache):
    head = commit(source, {"other/pre_release_hooks/pre_release_hook.py": "exit(0)\n"})
    git_dir = repos.fetch(str(source), cache)
    assert repos.find_hook(git_dir, head, "shop") is None


def test_find_hook_follows_a_symlink_inside_the_repository(source, cache):
    symlink(source, f"{HOOKS}/pre_release_hook.py", "../../common/gate.py")
    head = commit(source, {"common/gate.py": "print('gate')\n"})
    git_dir = repos.fetch(str(source), cache)
    found = repos.find_hook(git_dir, head, "shop")
    assert (found.path, found.kind, found.content) == ("common/gate.py", "py", b"print('gate')\n")


def test_find_hook_follows_a_chain_of_symlinks_to_the_repository_root(source, cache):
    symlink(source, f"{HOOKS}/pre_release_hook.sh", "shared.sh")
    symlink(source, f"{HOOKS}/shared.sh", "../../gate.sh")
    head = commit(source, {"gate.sh": "exit 2\n"})
    git_dir = repos.fetch(str(source), cache)
    found = repos.find_hook(git_dir, head, "shop")
    assert (found.path, found.kind, found.content) == ("gate.sh", "sh", b"exit 2\n")


def test_find_hook_in_an_unknown_commit_raises(source, cache):
    git_dir = repos.fetch(str(source), cache)
    with pytest.raises(RepoError, match=f"Commit '{'1' * 40}' was not found"):
        repos.find_hook(git_dir, "1" * 40, "shop")


@pytest.mark.parametrize(("target", "reason"), [
    ("../../../outside.py", "leaves the repository"),
    ("/etc/passwd", "leaves the repository"),
    ("missing.py", "does not resolve"),
    ("pre_release_hook.py", "does not resolve"),  # a loop onto itself
])
def test_find_hook_refuses_a_symlink_that_leaves_or_does_not_resolve(source, cache, target, reason):
    symlink(source, f"{HOOKS}/pre_release_hook.py", target)
    head = commit(source, {})
    git_dir = repos.fetch(str(source), cache)
    with pytest.raises(RepoError, match=f"pre_release_hook.py is a symlink that {reason}"):
        repos.find_hook(git_dir, head, "shop")


def test_find_hook_refuses_a_directory_in_place_of_the_hook(source, cache):
    head = commit(source, {f"{HOOKS}/pre_release_hook.py/inner.py": "exit(0)\n"})
    git_dir = repos.fetch(str(source), cache)
    with pytest.raises(RepoError, match="is not a regular file"):
        repos.find_hook(git_dir, head, "shop")


def test_concurrent_first_fetches_share_one_clone(source, cache):
    with ThreadPoolExecutor(4) as pool:
        dirs = set(pool.map(lambda _: repos.fetch(str(source), cache), range(4)))
    assert dirs == {repos.mirror_path(str(source), cache)}
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == [next(iter(dirs)).name]


# -- checkouts written from the object reader --------------------------------------------------


def archive_copy(git_dir: Path, sha: str, dest: Path) -> None:
    dest.mkdir()
    repos._archive(git_dir, sha, dest)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under `root`: (kind, mode bits, content or link target)."""
    found = {}
    for path in sorted(root.rglob("*")):
        info = os.lstat(path)
        name = str(path.relative_to(root))
        if stat.S_ISLNK(info.st_mode):
            found[name] = ("link", None, os.readlink(path))
        elif stat.S_ISDIR(info.st_mode):
            found[name] = ("dir", stat.S_IMODE(info.st_mode), None)
        else:
            found[name] = ("file", stat.S_IMODE(info.st_mode), path.read_bytes())
    return found


def test_a_checkout_from_the_reader_matches_git_archive_and_the_cache_changes_nothing(source, cache, tmp_path,
                                                                                      monkeypatch):
    files = {f"many/f{n:03d}.txt": f"file {n}\n" for n in range(120)}  # more than one pipelined batch
    files["big/blob.bin"] = "x" * (3 << 20)  # streamed, not cached
    files["deep/er/still/deeper/file.txt"] = "deep\n"
    symlink(source, "links/outside", "/etc/passwd")  # a link may point anywhere; nothing is written through it
    symlink(source, "links/readme", "../README")
    pinned = commit(source, files)
    git_dir = repos.fetch(str(source), cache)
    expected = tmp_path / "archive"
    archive_copy(git_dir, pinned, expected)
    monkeypatch.setattr(repos, "_archive", None)  # written from the reader's answers, not by git archive
    for attempt in ("first", "cached"):
        dest = tmp_path / attempt
        repos.checkout(git_dir, pinned, dest)
        assert snapshot(dest) == snapshot(expected)
    assert stat.S_IMODE(os.stat(tmp_path / "cached" / "bin" / "deploy.sh").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / "cached" / "README").st_mode) == 0o644


def test_git_filters_send_the_checkout_through_git_archive(source, cache, tmp_path):
    pinned = commit(source, {"notes.txt": "one\ntwo\n"})
    git_dir = repos.fetch(str(source), cache)
    git(git_dir, "config", "core.autocrlf", "true")
    repos.checkout(git_dir, pinned, tmp_path / "crlf")
    assert (tmp_path / "crlf" / "notes.txt").read_bytes() == b"one\r\ntwo\r\n"


def raw_tree(repo: Path, entries: list[tuple[str, str, str]]) -> str:
    """A tree object git itself would refuse to make (mode, name, sha), written as is."""
    data = b"".join(f"{mode} {name}".encode() + b"\0" + bytes.fromhex(sha) for mode, name, sha in entries)
    proc = subprocess.run(["git", "-C", str(repo), "hash-object", "-t", "tree", "-w", "--literally", "--stdin"],
                          input=data, capture_output=True, check=True)
    return proc.stdout.decode().strip()


def commit_tree(repo: Path, tree: str) -> str:
    sha = git(repo, "commit-tree", tree, "-m", "crafted")
    git(repo, "update-ref", "refs/heads/crafted", sha)
    return sha


@pytest.mark.parametrize("name", ["..", ".", "a/b"])
def test_a_tree_entry_that_is_no_file_name_is_refused(source, cache, tmp_path, name):
    blob = subprocess.run(["git", "-C", str(source), "hash-object", "-w", "--stdin"], input=b"escaped\n",
                          capture_output=True, check=True).stdout.decode().strip()
    crafted = commit_tree(source, raw_tree(source, [("100644", name, blob)]))
    git_dir = repos.fetch(str(source), cache)
    with pytest.raises(RepoError, match="cannot be a file name"):
        repos.checkout(git_dir, crafted, tmp_path / "checkout")
    assert not (tmp_path / "escaped").exists()


def test_a_symlink_and_a_folder_of_the_same_name_cannot_write_through_the_link(source, cache, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    hash_object = ["git", "-C", str(source), "hash-object", "-w", "--stdin"]
    link = subprocess.run(hash_object, input=str(outside).encode(), capture_output=True, check=True).stdout
    blob = subprocess.run(hash_object, input=b"written\n", capture_output=True, check=True).stdout
    inner = raw_tree(source, [("100644", "file", blob.decode().strip())])
    crafted = commit_tree(source, raw_tree(source, [("120000", "a", link.decode().strip()), ("40000", "a", inner)]))
    git_dir = repos.fetch(str(source), cache)
    with pytest.raises(RepoError):
        repos.checkout(git_dir, crafted, tmp_path / "checkout")
    assert list(outside.iterdir()) == []


def test_the_long_lived_reader_sees_a_branch_another_process_fetched(source, cache):
    git_dir = repos.fetch(str(source), cache)
    first = repos.resolve_commit(git_dir, "main")
    newer = commit(source, {"README": "newer\n"})
    subprocess.run(["git", f"--git-dir={git_dir}", "fetch", "-q", "origin"], check=True)  # not through repos
    assert repos.resolve_commit(git_dir, "main") == newer != first


def test_a_mirror_removed_and_cloned_again_gets_a_new_reader(source, cache, tmp_path):
    git_dir = repos.fetch(str(source), cache)
    head = repos.resolve_commit(git_dir, "main")
    shutil.rmtree(git_dir)
    git_dir.with_suffix(".fetched").unlink()
    assert repos.fetch(str(source), cache) == git_dir
    repos.checkout(git_dir, head, tmp_path / "again")
    assert (tmp_path / "again" / "README").read_text() == "hello\n"
