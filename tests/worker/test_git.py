"""webapp.running.git against real git repositories made in each test."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from webapp.running import git as repos
from webapp.running.git import RepoError

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


def test_a_pinned_commit_already_in_the_mirror_needs_no_fetch_and_an_unknown_one_fetches(source, cache):
    git_dir = repos.fetch(str(source), cache)
    known = git(source, "rev-parse", "HEAD")
    commit(source, {"README": "later\n"})
    repos.mirror_with(str(source), cache, known)
    assert repos.resolve_commit(git_dir, "main") == known  # no fetch happened
    newer = git(source, "rev-parse", "HEAD")
    repos.mirror_with(str(source), cache, newer)  # unknown commit: fetches
    assert repos.resolve_commit(git_dir, "main") == newer


def test_fetch_always_fetches_even_when_the_mirror_has_what_was_asked_before(source, cache):
    git_dir = repos.fetch(str(source), cache)
    newer = commit(source, {"README": "later\n"})
    repos.fetch(str(source), cache)
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


def test_concurrent_first_fetches_share_one_clone(source, cache):
    with ThreadPoolExecutor(4) as pool:
        dirs = set(pool.map(lambda _: repos.fetch(str(source), cache), range(4)))
    assert dirs == {repos.mirror_path(str(source), cache)}
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == [next(iter(dirs)).name]


# -- what a checkout writes ---------------------------------------------------------------


def test_a_link_may_point_anywhere_and_nothing_is_written_through_it(source, cache, tmp_path):
    symlink(source, "links/outside", "/etc/passwd")
    symlink(source, "links/readme", "../README")
    pinned = commit(source, {"deep/er/file.txt": "deep\n"})
    git_dir = repos.fetch(str(source), cache)
    repos.checkout(git_dir, pinned, tmp_path / "checkout")
    assert os.readlink(tmp_path / "checkout" / "links" / "outside") == "/etc/passwd"
    assert (tmp_path / "checkout" / "links" / "readme").read_text() == "hello\n"
    assert (tmp_path / "checkout" / "deep" / "er" / "file.txt").read_text() == "deep\n"


def test_only_the_paths_asked_for_are_checked_out(source, cache, tmp_path):
    pinned = commit(source, {"shop/pre_release_hooks/a.py": "a\n", "shop/other.txt": "no\n"})
    git_dir = repos.fetch(str(source), cache)
    repos.checkout(git_dir, pinned, tmp_path / "part", paths=("shop/pre_release_hooks",))
    files = sorted(str(p.relative_to(tmp_path / "part")) for p in (tmp_path / "part").rglob("*") if p.is_file())
    assert files == ["shop/pre_release_hooks/a.py"]


def test_a_folder_is_listed_as_git_stores_it_links_included(source, cache):
    symlink(source, "shop/pre_release_hooks/link.py", "/etc/passwd")
    pinned = commit(source, {"shop/pre_release_hooks/pre_release_hook.py": "x\n", "shop/else.txt": "y\n"})
    git_dir = repos.fetch(str(source), cache)
    listing = repos.list_folder(git_dir, pinned, "shop/pre_release_hooks")
    assert sorted(listing) == ["shop/pre_release_hooks/link.py", "shop/pre_release_hooks/pre_release_hook.py"]
    assert listing["shop/pre_release_hooks/link.py"].is_symlink
    assert listing["shop/pre_release_hooks/pre_release_hook.py"].is_file
    assert repos.list_folder(git_dir, pinned, "nowhere") == {}


def test_git_filters_apply_to_the_checkout(source, cache, tmp_path):
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


@pytest.mark.parametrize("name", ["..", ".", "a/b", "../../escaped"])
def test_a_crafted_tree_entry_never_lands_outside_the_checkout(source, cache, tmp_path, name):
    blob = subprocess.run(["git", "-C", str(source), "hash-object", "-w", "--stdin"], input=b"escaped\n",
                          capture_output=True, check=True).stdout.decode().strip()
    crafted = commit_tree(source, raw_tree(source, [("100644", name, blob)]))
    git_dir = repos.fetch(str(source), cache)
    before = sorted(tmp_path.parent.iterdir())
    try:
        repos.checkout(git_dir, crafted, tmp_path / "checkout")
    except RepoError as error:
        assert "could not be checked out" in str(error)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "checkout", "source"]
    assert sorted(tmp_path.parent.iterdir()) == before
    written = [p for p in (tmp_path / "checkout").rglob("*") if p.is_file()]
    assert all(p.resolve().is_relative_to((tmp_path / "checkout").resolve()) for p in written)


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


def test_a_mirror_removed_is_cloned_again(source, cache, tmp_path):
    git_dir = repos.fetch(str(source), cache)
    head = repos.resolve_commit(git_dir, "main")
    shutil.rmtree(git_dir)
    git_dir.with_suffix(".fetched").unlink()
    assert repos.fetch(str(source), cache) == git_dir
    repos.checkout(git_dir, head, tmp_path / "again")
    assert (tmp_path / "again" / "README").read_text() == "hello\n"


def test_a_tree_named_in_place_of_a_commit_is_refused(source, cache, tmp_path):
    tree = git(source, "rev-parse", "HEAD^{tree}")
    git_dir = repos.fetch(str(source), cache)
    with pytest.raises(RepoError, match="could not be checked out"):
        repos.checkout(git_dir, tree, tmp_path / "checkout")
    with pytest.raises(RepoError, match="was not found"):
        repos.list_folder(git_dir, tree, "bin")


def test_a_commits_subject_and_author_are_one_line_whatever_the_committer_wrote(source, cache):
    # git keeps a carriage return in %s and %an; in a text mail it would start a line of its own
    before = git(source, "rev-parse", "HEAD")
    subprocess.run([*GIT, "-C", str(source), "-c", "user.name=eve\rReject:  https://evil.example/r", "commit", "-q",
                    "--allow-empty", "-m", "fix typo\rApprove:  https://evil.example/a"], check=True)
    mirror = repos.fetch(str(source), cache)
    [found], more = repos.log(mirror, before, git(source, "rev-parse", "HEAD"), limit=10)
    assert (found.subject, found.author_name, more) == (
        "fix typo Approve: https://evil.example/a", "eve Reject: https://evil.example/r", False)
