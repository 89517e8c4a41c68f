"""webapp.running.hook with real scripts and real git repositories: the hook folder of the hook ref
and only it is placed (a link out of it or a non-file refused, .py before .sh), every difference
from the commit under review named; how a hook starts (the interpreter from the system's PATH
alone); preflight's checks, their sentences read whole; its environment."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import commit_files, git, make_repo
from webapp.running import git as gitlib
from webapp.running import hook
from webapp.running.hook import preflight

ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "payload.json"
    path.write_text('{"environmentName": "prod", "releaseStream": "PROD", "resources": []}')
    return path


def write_hook(tmp_path: Path, kind: str, body: str) -> Path:
    script = tmp_path / f"pre_release_hook.{kind}"
    script.write_text(textwrap.dedent(body))
    return script


# -- how a hook is started ---------------------------------------------------------------


def test_a_python_hook_runs_without_python_variables_or_user_site_and_bash_plainly(tmp_path):
    script, payload = tmp_path / "hooks" / "pre_release_hook.py", tmp_path / "payload.json"
    python, bash = shutil.which("python3", path=hook.DEFAULT_PATH), shutil.which("bash", path=hook.DEFAULT_PATH)
    assert hook.hook_argv(script, "py", payload, "python3") == [python, "-E", "-s", str(script), str(payload)]
    assert hook.hook_argv(script, "sh", payload, "python3") == [bash, str(script), str(payload)]
    assert hook.hook_argv(script, "py", payload, "/opt/py/bin/python3")[0] == "/opt/py/bin/python3"


def test_a_hooks_variables_never_change_how_its_interpreter_starts():
    variables = {"REGION": "eu", "BASH_ENV": "x", "ENV": "x", "SHELLOPTS": "xtrace", "BASH_FUNC_ls%%": "() { :; }",
                 "LD_PRELOAD": "x", "PYTHONPATH": ".", "PATH": "/usr/bin"}
    assert hook.hook_variables(variables) == {"REGION": "eu", "PATH": "/usr/bin"}


# -- preflight -------------------------------------------------------------------------


def test_preflight_passes_valid_hooks(tmp_path):
    assert preflight(write_hook(tmp_path, "py", "import sys\nsys.exit(2)\n"), "py") is None
    assert preflight(write_hook(tmp_path, "sh", "if true; then exit 2; fi\n"), "sh") is None


def test_preflight_reports_a_missing_hook(tmp_path):
    assert preflight(tmp_path / "pre_release_hook.py", "py") == (
        "The hook pre_release_hook.py does not exist; add it to the repository.")


def test_preflight_reports_a_directory_or_a_dangling_link(tmp_path):
    (tmp_path / "pre_release_hook.sh").mkdir()
    (tmp_path / "pre_release_hook.py").symlink_to("nowhere.py")
    assert preflight(tmp_path / "pre_release_hook.sh", "sh") == (
        "The hook pre_release_hook.sh is not a regular file; commit the script there.")
    assert "is not a regular file" in preflight(tmp_path / "pre_release_hook.py", "py")


def test_preflight_reports_a_python_syntax_error_with_its_line(tmp_path):
    script = write_hook(tmp_path, "py", "import sys\n\ndef broken(:\n    pass\n")
    message = preflight(script, "py")
    assert message.startswith("The hook pre_release_hook.py has a Python syntax error at line 3: ")


def test_preflight_reports_a_bash_syntax_error_with_bashs_message(tmp_path):
    script = write_hook(tmp_path, "sh", "echo fine\nif then fi (\n")
    message = preflight(script, "sh")
    assert message.startswith("The hook pre_release_hook.sh has a bash syntax error: ")
    assert "line 2" in message and "syntax error" in message


# -- environment -------------------------------------------------------------------------


def test_hook_environment_is_an_allowlist(monkeypatch, tmp_path):
    monkeypatch.setenv("SECRET_KEY", "do-not-leak")
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:pw@db/app")
    venv_bin = Path(sys.prefix) / "bin"
    monkeypatch.setenv("PATH", f"{venv_bin}:/usr/bin:/bin")
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    in_venv = sys.prefix != sys.base_prefix
    env = hook.hook_environment(release_id=42, project="shop", environment="prod", release_stream="PROD",
                                 home=tmp_path, variables={"REGION": "eu", "RELEASE_ID": "spoofed"})
    assert env == {"PATH": "/usr/bin:/bin" if in_venv else f"{venv_bin}:/usr/bin:/bin",
                   "LANG": "en_US.UTF-8", "HOME": str(tmp_path), "RELEASE_ID": "42", "PROJECT_NAME": "shop",
                   "ENVIRONMENT_NAME": "prod", "RELEASE_STREAM": "PROD", "REGION": "eu"}


def test_hook_environment_has_defaults_without_path_or_lang(monkeypatch, tmp_path):
    monkeypatch.delenv("PATH")
    monkeypatch.delenv("LANG", raising=False)
    env = hook.hook_environment(release_id=1, project="p", environment="e", release_stream="S", home=tmp_path)
    assert env["PATH"] == hook.DEFAULT_PATH and env["LANG"] == "C.UTF-8"


FOLDER = "svc/pre_release_hooks"


def _repo(tmp_path: Path, files: dict[str, str]) -> tuple[Path, str]:
    repo = make_repo(tmp_path / "repo", files)
    return repo / ".git", git(repo, "rev-parse", "HEAD")


def _link(repo: Path, name: str, target: str) -> str:
    (repo / name).parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, repo / name)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "a link")
    return git(repo, "rev-parse", "HEAD")


# -- placing the hook folder of the hook ref ------------------------------------------------------

def test_the_whole_hook_folder_is_placed_and_a_python_hook_wins_over_a_shell_one(tmp_path):
    git_dir, commit = _repo(tmp_path, {f"{FOLDER}/pre_release_hook.py": "print('py')\n",
                                       f"{FOLDER}/pre_release_hook.sh": "echo sh\n",
                                       f"{FOLDER}/helper.py": "HELP = 1\n", "svc/deploy.sh": "echo deploy\n"})
    dest = tmp_path / "trusted"
    dest.mkdir()
    placed = hook.place_trusted_hook(git_dir, commit, "svc", dest)
    assert placed == hook.TrustedHook(path=f"{FOLDER}/pre_release_hook.py", kind="py",
                                      script=dest / FOLDER / "pre_release_hook.py")
    assert sorted(p.name for p in (dest / FOLDER).iterdir()) == ["helper.py", "pre_release_hook.py",
                                                                  "pre_release_hook.sh"]
    assert not (dest / "svc" / "deploy.sh").exists()  # only the hook folder


def test_a_shell_hook_is_placed_when_there_is_no_python_one_and_none_without_either(tmp_path):
    git_dir, commit = _repo(tmp_path, {f"{FOLDER}/pre_release_hook.sh": "exit 0\n"})
    dest = tmp_path / "sh"
    dest.mkdir()
    assert hook.place_trusted_hook(git_dir, commit, "svc", dest) == hook.TrustedHook(
        path=f"{FOLDER}/pre_release_hook.sh", kind="sh", script=dest / FOLDER / "pre_release_hook.sh")
    other_dir, other = _repo(tmp_path / "other", {f"{FOLDER}/notes.txt": "no hook here\n", "x": "x"})
    assert hook.place_trusted_hook(other_dir, other, "svc", tmp_path / "none") is None
    empty_dir, empty = _repo(tmp_path / "empty", {"README": "no hook folder\n"})
    assert hook.place_trusted_hook(empty_dir, empty, "svc", tmp_path / "nothing") is None


def test_a_link_inside_the_folder_is_kept_and_one_that_leaves_it_is_refused(tmp_path):
    repo = make_repo(tmp_path / "repo", {f"{FOLDER}/real_hook.py": "print('real')\n", "svc/outside.py": "x = 1\n"})
    inside = _link(repo, f"{FOLDER}/pre_release_hook.py", "real_hook.py")
    dest = tmp_path / "inside"
    placed = hook.place_trusted_hook(repo / ".git", inside, "svc", dest)
    assert placed.path == f"{FOLDER}/pre_release_hook.py" and placed.script.read_text() == "print('real')\n"
    leaving = _link(repo, f"{FOLDER}/shared.py", "../outside.py")
    with pytest.raises(gitlib.RepoError) as refused:
        hook.place_trusted_hook(repo / ".git", leaving, "svc", tmp_path / "leaving")
    assert str(refused.value) == (f"The hook folder at the hook ref holds {FOLDER}/shared.py, a symlink that leaves "
                                  f"{FOLDER}/; commit the file itself there.")


def test_a_link_to_a_sibling_folder_sharing_the_folders_name_as_a_prefix_is_refused(tmp_path):
    repo = make_repo(tmp_path / "repo", {"svc/pre_release_hooks_extra/hook.py": "print('not trusted')\n",
                                         f"{FOLDER}/pre_release_hook.sh": "exit 0\n"})
    commit = _link(repo, f"{FOLDER}/pre_release_hook.py", "../pre_release_hooks_extra/hook.py")
    with pytest.raises(gitlib.RepoError, match="a symlink that leaves"):
        hook.place_trusted_hook(repo / ".git", commit, "svc", tmp_path / "dest")


def test_a_hook_path_that_is_a_link_to_a_folder_is_refused_as_not_a_file(tmp_path):
    repo = make_repo(tmp_path / "repo", {f"{FOLDER}/lib/util.py": "x = 1\n"})
    commit = _link(repo, f"{FOLDER}/pre_release_hook.py", "lib")
    with pytest.raises(gitlib.RepoError) as refused:
        hook.place_trusted_hook(repo / ".git", commit, "svc", tmp_path / "dest")
    assert str(refused.value) == (f"The pre-release hook {FOLDER}/pre_release_hook.py at the hook ref is not a file; "
                                  "commit the script itself at that path.")


def test_a_submodule_in_the_hook_folder_is_refused(tmp_path):
    repo = make_repo(tmp_path / "repo", {f"{FOLDER}/pre_release_hook.sh": "exit 0\n"})
    sha = git(repo, "rev-parse", "HEAD")
    git(repo, "update-index", "--add", "--cacheinfo", f"160000,{sha},{FOLDER}/vendored")
    git(repo, "commit", "-q", "-m", "a submodule")
    with pytest.raises(gitlib.RepoError) as refused:
        hook.place_trusted_hook(repo / ".git", git(repo, "rev-parse", "HEAD"), "svc", tmp_path / "dest")
    assert str(refused.value) == (f"The hook folder at the hook ref holds {FOLDER}/vendored, which is not a file; "
                                  f"keep only files in {FOLDER}/.")


def test_every_difference_in_the_hook_folder_is_named_with_what_happened(tmp_path):
    repo = make_repo(tmp_path / "repo", {f"{FOLDER}/a_same.py": "a\n", f"{FOLDER}/pre_release_hook.py": "print(1)\n",
                                         f"{FOLDER}/same.py": "s\n",
                                         f"{FOLDER}/gone.py": "g\n", f"{FOLDER}/linked.py": "l\n",
                                         "svc/elsewhere.txt": "e\n"})
    ours = git(repo, "rev-parse", "HEAD")
    commit_files(repo, {f"{FOLDER}/pre_release_hook.py": "print(2)\n", f"{FOLDER}/gone.py": None,
                        f"{FOLDER}/linked.py": None, f"{FOLDER}/new.py": "n\n", "svc/elsewhere.txt": "changed\n"})
    _link(repo, f"{FOLDER}/linked.py", "same.py")
    with open(os.fsencode(repo / FOLDER) + b"/caf\xe9.py", "w") as latin1:  # a name that is not UTF-8
        latin1.write("c\n")
    theirs = _link(repo, f"{FOLDER}/added_link.py", "same.py")
    assert hook.folder_differences(repo / ".git", theirs, ours, "svc") == [
        f"{FOLDER}/added_link.py (a symlink added)", f"{FOLDER}/caf\\xe9.py (added)", f"{FOLDER}/gone.py (removed)",
        f"{FOLDER}/linked.py (made a symlink)", f"{FOLDER}/new.py (added)", f"{FOLDER}/pre_release_hook.py (changed)"]
    # the other way round: a link made a file again is a change, a file the commit lacks was removed
    assert hook.folder_differences(repo / ".git", ours, theirs, "svc") == [
        f"{FOLDER}/added_link.py (removed)", f"{FOLDER}/caf\\xe9.py (removed)", f"{FOLDER}/gone.py (added)",
        f"{FOLDER}/linked.py (changed)",
        f"{FOLDER}/new.py (removed)", f"{FOLDER}/pre_release_hook.py (changed)"]
    assert hook.folder_differences(repo / ".git", ours, ours, "svc") == []


# -- preflight, read whole ------------------------------------------------------------------------------

def test_a_hook_of_an_unknown_kind_is_refused_before_anything_is_read(tmp_path):
    assert hook.preflight(tmp_path / "pre_release_hook.rb", "rb") == (
        "The hook pre_release_hook.rb has an unknown kind 'rb'; name it .py or .sh.")


def test_a_dangling_link_in_place_of_the_hook_is_not_a_regular_file(tmp_path):
    (tmp_path / "pre_release_hook.py").symlink_to("nowhere.py")
    assert hook.preflight(tmp_path / "pre_release_hook.py", "py") == (
        "The hook pre_release_hook.py is not a regular file; commit the script there.")


def test_a_hook_that_cannot_be_read_says_why(tmp_path):
    (tmp_path / "pre_release_hook.py").symlink_to("/proc/self/mem")  # a regular file whose first byte is unreadable
    assert hook.preflight(tmp_path / "pre_release_hook.py", "py") == (
        "The hook pre_release_hook.py cannot be read (Input/output error); check its permissions.")


def test_a_python_syntax_error_is_told_with_its_line_and_pythons_words(tmp_path):
    script = tmp_path / "pre_release_hook.py"
    script.write_text("import sys\n\ndef broken(:\n    pass\n")
    assert hook.preflight(script, "py") == ("The hook pre_release_hook.py has a Python syntax error at line 3: "
                                            "invalid syntax; fix it and trigger the release again.")
    script.write_text('print("\\d")\n')  # only a warning (invalid escape): python3 runs it
    assert hook.preflight(script, "py") is None
    script.write_bytes(b"# -*- coding: latin-1 -*-\nprint('caf\xe9')\n")  # not UTF-8, as it declares
    assert hook.preflight(script, "py") is None


def test_a_bash_syntax_error_is_told_in_bashs_words_at_most_a_thousand_characters(tmp_path):
    script = tmp_path / "pre_release_hook.sh"
    script.write_text("echo fine\nif then fi ( " + "x" * 1500 + "\n")
    words = subprocess.run(["bash", "-n", str(script)], capture_output=True, env={"LANG": "C"}).stderr.decode()
    assert len(words.strip()) > 1000
    assert hook.preflight(script, "sh") == (f"The hook pre_release_hook.sh has a bash syntax error: "
                                            f"{words.strip()[:1000]}; fix it and trigger the release again.")
    short = tmp_path / "short" / "pre_release_hook.sh"
    short.parent.mkdir()
    short.write_text("if then\n")
    assert hook.preflight(short, "sh") == (
        f"The hook pre_release_hook.sh has a bash syntax error: {short}: line 1: syntax error near unexpected "
        f"token `then'\n{short}: line 1: `if then'; fix it and trigger the release again.")


def test_the_bash_syntax_check_runs_the_systems_bash_whatever_the_workers_path(tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "bash").write_text("#!/bin/sh\necho 'not the system bash' >&2\nexit 1\n")
    (fake / "bash").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")
    script = tmp_path / "pre_release_hook.sh"
    script.write_text("echo fine\n")
    assert hook.preflight(script, "sh") is None


def test_bashs_words_in_bytes_that_are_not_utf8_are_still_told(tmp_path):
    folder = os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9")
    os.mkdir(folder)
    script = Path(folder) / "pre_release_hook.sh"
    script.write_text("if then\n")
    shown = f"{tmp_path}/caf\ufffd/pre_release_hook.sh"
    assert hook.preflight(script, "sh") == (
        f"The hook pre_release_hook.sh has a bash syntax error: {shown}: line 1: syntax error near unexpected "
        f"token `then'\n{shown}: line 1: `if then'; fix it and trigger the release again.")


# -- the interpreter and the environment -------------------------------------------------------------

def test_the_interpreter_is_found_on_the_system_path_alone(tmp_path, monkeypatch):
    fake = tmp_path / "bin"
    fake.mkdir()
    for name in ("python3", "bash"):
        (fake / name).write_text("#!/bin/sh\nexit 0\n")
        (fake / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:{os.environ['PATH']}")  # a PATH someone could add to
    argv = hook.hook_argv(tmp_path / "h.py", "py", tmp_path / "p.json", "python3")
    assert argv[0] != str(fake / "python3") and Path(argv[0]).parent in {Path(p) for p in hook.DEFAULT_PATH.split(":")}
    assert hook.hook_argv(tmp_path / "h.sh", "sh", tmp_path / "p.json", "python3")[0] != str(fake / "bash")
    # an interpreter that is nowhere is named as given (and the run says it is missing)
    assert hook.hook_argv(tmp_path / "h.py", "py", tmp_path / "p.json", "python-nowhere") == [
        "python-nowhere", "-E", "-s", str(tmp_path / "h.py"), str(tmp_path / "p.json")]


def test_the_environments_path_drops_the_virtualenv_and_relative_entries(tmp_path, monkeypatch):
    monkeypatch.setenv("VIRTUAL_ENV", "/opt/venv")
    monkeypatch.setenv("PATH", "/opt/venv/bin/:bin:/usr/local/bin:./tools:/opt/venv/bin:/usr/bin")
    env = hook.hook_environment(release_id=7, project="p", environment="e", release_stream="S", home=tmp_path)
    assert env["PATH"] == "/usr/local/bin:/usr/bin"
    monkeypatch.delenv("VIRTUAL_ENV")
    monkeypatch.setenv("PATH", "relative:./only")
    env = hook.hook_environment(release_id=7, project="p", environment="e", release_stream="S", home=tmp_path)
    assert env["PATH"] == hook.DEFAULT_PATH  # nothing usable left: the system's


def test_outside_a_virtualenv_the_interpreters_own_folder_stays_on_path(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "base_prefix", sys.prefix)  # as when the worker runs on the system python
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    monkeypatch.setenv("PATH", f"{sys.prefix}/bin:/usr/bin")
    env = hook.hook_environment(release_id=7, project="p", environment="e", release_stream="S", home=tmp_path)
    assert env["PATH"] == f"{sys.prefix}/bin:/usr/bin"
