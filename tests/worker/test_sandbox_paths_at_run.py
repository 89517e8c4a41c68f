"""Host paths at run time: what the runner binds, judged again against SANDBOX_ALLOWED_PATHS
at each run, and what a release command sees of them in the real sandbox."""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from tests.helpers import release, trigger
from tests.worker.test_sandbox_paths import app_config, host, ro, rw  # noqa: F401  (fixtures: the same host and settings)
from webapp.config import ROOT
from webapp.environments import WORKSPACE_ROOT, release_command_binds

# -- release_command_binds: what the runner binds, judged again at run time ------------------------

def test_release_command_binds_resolves_each_path_and_lists_parents_first(host):
    (host.shop / "site").symlink_to(host.docs)
    stored = [rw(host.shop / "www"), ro(host.shop / "site"), ro(host.shop)]
    assert release_command_binds(stored, host.allowed, host.config()) == [
        (str(host.docs), False), (str(host.shop), False), (str(host.shop / "www"), True)]
    assert release_command_binds([], (), host.config()) == []


def test_release_command_binds_judges_against_the_roots_allowed_now(host):
    stored = [ro(host.docs), rw(host.shop)]
    with pytest.raises(ValueError) as refused:
        release_command_binds(stored, (str(host.docs),), host.config())
    assert str(refused.value) == (f"sandbox_paths: {host.shop} is not under SANDBOX_ALLOWED_PATHS ({host.docs}); "
                                  "ask the operator to allow it, or choose a path under one of those.")
    with pytest.raises(ValueError, match=r"allows no host paths \(SANDBOX_ALLOWED_PATHS is empty\)"):
        release_command_binds(stored, (), host.config())
    with pytest.raises(ValueError, match="is not under"):  # component by component
        release_command_binds([ro(host.shopping)], (str(host.shop),), host.config())
    with pytest.raises(ValueError, match="allows no host paths"):  # a relative root allows nothing
        release_command_binds([ro(host.shop)], ("srv",), host.config())


PROTECTED = {
    "the application": (lambda h: ROOT, "is the application's own directory"),
    "inside the application": (lambda h: ROOT / "webapp", "is inside the application's own directory"),
    "around the application": (lambda h: ROOT.parent, "contains the application's own directory"),
    "inside the instance": (lambda h: h.instance / "outbox", "is inside the instance directory (INSTANCE_DIR)"),
    "the repository cache": (lambda h: h.repo_cache, "is the repository cache (REPO_CACHE_DIR)"),
    "the database's directory": (lambda h: h.database_dir, "is the database's directory"),
    "around the database": (lambda h: h.root / "var", "contains the database's directory"),
    "a workspace": (lambda h: Path(WORKSPACE_ROOT) / "release-7", "is inside the workers' workspaces"),
    "the temporary directory": (lambda h: Path(tempfile.gettempdir()), "contains"),
}


@pytest.mark.parametrize("case", list(PROTECTED))
def test_release_command_binds_never_binds_the_applications_own_locations(host, case):
    path, sentence = PROTECTED[case]
    # Even when the operator allowed everything (the config refuses "/", this function does not).
    with pytest.raises(ValueError, match=re.escape(sentence)):
        release_command_binds([rw(path(host))], ("/",), host.config())


def test_release_command_binds_reads_the_protected_locations_from_the_app(app, host):
    with app.app_context(), pytest.raises(ValueError, match=r"is inside the instance directory \(INSTANCE_DIR\)"):
        release_command_binds([rw(host.instance / "uploads")], ("/",))


def test_release_command_binds_refuses_a_symlink_turned_elsewhere_since_it_was_saved(host):
    link = host.shop / "current"
    link.symlink_to(host.shop / "www")
    assert release_command_binds([rw(link)], host.allowed, host.config()) == [(str(host.shop / "www"), True)]
    link.unlink()
    link.symlink_to(host.instance)
    with pytest.raises(ValueError, match=re.escape(f"(a symlink to {host.instance}) is the instance directory")):
        release_command_binds([rw(link)], host.allowed, host.config())


def test_release_command_binds_refuses_a_path_missing_on_this_worker(host):
    with pytest.raises(ValueError) as refused:
        release_command_binds([ro(host.docs / "gone")], host.allowed, host.config())
    assert str(refused.value) == (f"sandbox_paths: {host.docs}/gone does not exist on this worker; create it, "
                                  "or remove it from the environment's settings.")


@pytest.mark.parametrize("stored", [None, "/srv/shop", [{"path": "srv"}], [{"path": "/srv", "writable": 1}],
                                    [{"path": "/srv/../etc"}], [{"path": "/srv", "extra": True}]])
def test_release_command_binds_refuses_a_malformed_stored_value(host, stored):
    with pytest.raises(ValueError, match="^sandbox_paths"):
        release_command_binds(stored, ("/",), host.config())


def test_the_workspace_root_is_where_the_runner_checks_releases_out():
    from webapp.running import WORK_ROOT

    assert str(WORK_ROOT) == WORKSPACE_ROOT


# -- what a release command sees of them, in the real sandbox --------------------------------------


@pytest.mark.sandbox
def test_a_release_command_writes_its_writable_host_path_reads_its_read_only_one_and_nothing_else(
        host, api, new_environment, run_jobs):
    (host.docs / "notes.txt").write_text("read me\n")
    command = (f"echo deployed > {host.shop}/www/index.html && echo wrote-shop; "
               f"cat {host.docs}/notes.txt; touch {host.docs}/x 2>/dev/null || echo docs-read-only; "
               f"test -e {host.opt} || echo opt-not-given")
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": f"test -e {host.shop} || echo hook-sees-none\n"
                                                                   "exit 0\n"},
                    release_command=command,
                    sandbox_paths=[{"path": str(host.shop), "writable": True}, {"path": str(host.docs)}])
    release_id = trigger(api)
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "SUCCEEDED", data
    assert data["execution"]["output"].splitlines() == ["wrote-shop", "read me", "docs-read-only", "opt-not-given"]
    assert "hook-sees-none" in data["hook"]["output"]  # host paths are the release command's, never the hook's
    assert (host.shop / "www" / "index.html").read_text() == "deployed\n"
    assert not (host.docs / "x").exists()


def test_a_host_path_the_operator_no_longer_allows_fails_the_release_before_anything_runs(
        app, host, api, new_environment, run_jobs, tally):
    new_environment({"svc/pre_release_hooks/pre_release_hook.sh": "exit 0\n"}, release_command=tally.send("ran"),
                    sandbox_paths=[{"path": str(host.docs), "writable": True}])
    app.config["SANDBOX_ALLOWED_PATHS"] = (str(host.shop),)  # narrowed since the path was saved
    release_id = trigger(api)
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "FAILED" and "is not under SANDBOX_ALLOWED_PATHS" in data["error"]
    assert tally.lines == [] and data["execution"]["output"] == ""
