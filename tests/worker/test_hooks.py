"""webapp.running.hook with real scripts: how a hook starts, preflight checks, its environment."""
from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path

import pytest

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
