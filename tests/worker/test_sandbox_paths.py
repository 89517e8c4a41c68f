"""Host paths an environment gives its release command (sandbox_paths): only under the
operator's SANDBOX_ALLOWED_PATHS, never the application's own locations, checked when set
and again at every run; adding or widening one weakens the gate."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.notify_support import text_part
from webapp.environments import release_command_binds
from webapp.extensions import db
from webapp.models import AuditEvent, Environment, Project

PLAIN = {"README.md": "no hook here\n"}
ENV_URL = "/api/v1/projects/svc/environments/env"
PAGE = "/projects/svc/environments/env"
SETTINGS = f"{PAGE}/settings"
LABEL = "Host paths for the release command"


# -- a host: where releases may deploy, and where the application lives ---------------------------

class Host:
    """Directories under one temporary root; the operator allows srv/shop, srv/docs and opt."""

    def __init__(self, root: Path):
        self.root = root
        self.shop, self.docs, self.shopping = root / "srv/shop", root / "srv/docs", root / "srv/shopping"
        self.opt = root / "opt"
        self.instance, self.repo_cache = root / "opt/app/instance", root / "opt/app/repo-cache"
        self.database_dir = root / "var/db"
        for directory in (self.shop / "www", self.docs, self.shopping, self.instance, self.repo_cache,
                          self.database_dir, self.opt / "deploy"):
            directory.mkdir(parents=True)
        self.allowed = (str(self.shop), str(self.docs), str(self.opt))

    def config(self) -> dict:
        """The settings release_command_binds reads the protected locations from."""
        return {"INSTANCE_DIR": str(self.instance), "REPO_CACHE_DIR": str(self.repo_cache),
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{self.database_dir / 'releasegate.db'}"}


@pytest.fixture()
def host(tmp_path) -> Host:
    return Host(Path(os.path.realpath(tmp_path)) / "host")


@pytest.fixture()
def app_config(app_config, host, smtp_server):
    return {**app_config, "INSTANCE_DIR": str(host.instance), "REPO_CACHE_DIR": str(host.repo_cache),
            "SANDBOX_ALLOWED_PATHS": host.allowed, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": smtp_server.port}


@pytest.fixture()
def keeper(app, people, new_environment):
    """svc/env, and a persona who manages only it."""
    new_environment(PLAIN)
    with app.app_context():
        environment = db.session.scalar(sa.select(Environment).join(Project).where(Project.name == "svc"))
    people.add("keeper", "manage_environments", environment=environment)
    return "keeper"


def ro(path) -> dict:
    return {"path": str(path), "writable": False}


def rw(path) -> dict:
    return {"path": str(path), "writable": True}


def settings_events(app) -> list[dict]:
    with app.app_context():
        return [event.details for event in db.session.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "settings").order_by(AuditEvent.id))]


def not_allowed(host: Host, path: str, label: str = "sandbox_paths") -> str:
    return (f"{label}: {path} is not under SANDBOX_ALLOWED_PATHS ({', '.join(host.allowed)}); "
            "ask the operator to allow it, or choose a path under one of those.")


# -- the API --------------------------------------------------------------------------------------

def test_a_manager_sets_reads_and_clears_host_paths_through_the_api(api, keeper, host):
    sent = [{"path": f"{host.shop}/", "writable": True}, {"path": f"{host.docs}//guides/."}]
    response = api(keeper).patch(ENV_URL, json={"sandbox_paths": sent})
    assert response.status_code == 200, response.json
    # Normalised, writable false unless said; a path that does not exist yet on this host is fine.
    expected = [rw(host.shop), ro(host.docs / "guides")]
    assert response.json["sandbox_paths"] == expected
    assert api("member").get(ENV_URL).json["sandbox_paths"] == expected
    cleared = api(keeper).patch(ENV_URL, json={"sandbox_paths": []})
    assert cleared.status_code == 200 and cleared.json["sandbox_paths"] == []
    assert api("member").get(ENV_URL).json["sandbox_paths"] == []


def test_a_new_environment_has_no_host_paths_unless_created_with_them(api, keeper, host):
    assert api("member").get(ENV_URL).json["sandbox_paths"] == []
    response = api("admin").post("/api/v1/projects/svc/environments",
                                 json={"name": "shop", "release_stream": "PROD", "sandbox_paths": [rw(host.shop)]})
    assert response.status_code == 201, response.json
    assert api("member").get("/api/v1/projects/svc/environments/shop").json["sandbox_paths"] == [rw(host.shop)]


def test_people_without_manage_environments_cannot_set_host_paths(api, keeper, host):
    for persona in ("member", "dev", "approver"):
        response = api(persona).patch(ENV_URL, json={"sandbox_paths": [rw(host.shop)]})
        assert response.status_code == 403
    assert api("member").get(ENV_URL).json["sandbox_paths"] == []


REFUSALS = {
    "not a list": (lambda h: str(h.shop), 400, "sandbox_paths must be a list of objects like "
                                               '{"path": "/srv/shop", "writable": false}.'),
    "too many": (lambda h: [ro(h.shop / str(n)) for n in range(17)], 422,
                 "sandbox_paths holds 17 paths, at most 16 are allowed; give the command a common parent "
                 "directory instead."),
    "a string entry": (lambda h: [str(h.shop)], 400, "sandbox_paths: entry 1 must be an object like"),
    "an unknown key": (lambda h: [{"path": str(h.shop), "mode": "rw"}], 400,
                       "sandbox_paths: entry 1 has the unknown key 'mode'; an entry holds only path and writable."),
    "no path": (lambda h: [ro(h.docs), {"writable": True}], 400,
                "sandbox_paths: entry 2 has no path; give each entry an absolute path."),
    "writable not a boolean": (lambda h: [{"path": str(h.shop), "writable": "yes"}], 400,
                               "must be true or false."),
    "a relative path": (lambda h: [ro("srv/shop")], 422,
                        "sandbox_paths: 'srv/shop' is not an absolute path; write it from the root, e.g. /srv/shop."),
    "a '..' component": (lambda h: [ro(f"{h.shop}/../../../etc")], 422, "contains '..'; write the path without it."),
    "a NUL byte": (lambda h: [ro(f"{h.shop}/\x00x")], 422, "contains a NUL character, which cannot be stored"),
    "a control character": (lambda h: [ro(f"{h.shop}/\nx")], 422, "holds control or invalid characters"),
    "a lone surrogate": (lambda h: [ro(f"{h.shop}/\udcff")], 422,
                         "contains an unpaired surrogate, which cannot be stored"),
    "/ itself": (lambda h: [ro("//")], 422,
                 "sandbox_paths cannot give the command / itself; name the directories it needs."),
    "a path twice": (lambda h: [ro(h.shop), rw(f"{h.shop}/")], 422,
                     "twice; keep one entry (writable if the command writes there)."),
    "outside the allowed roots": (lambda h: [ro("/etc")], 422, "is not under SANDBOX_ALLOWED_PATHS ("),
    "a sibling that shares a prefix": (lambda h: [ro(h.shopping)], 422, "is not under SANDBOX_ALLOWED_PATHS"),
    "a directory holding the instance": (lambda h: [ro(h.opt / "app")], 422,
                                         "contains the instance directory (INSTANCE_DIR)"),
    "inside the instance": (lambda h: [rw(h.instance / "uploads")], 422,
                            "is inside the instance directory (INSTANCE_DIR)"),
    "the repository cache": (lambda h: [ro(h.repo_cache)], 422, "is the repository cache (REPO_CACHE_DIR)"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_each_refused_value_answers_with_its_status_and_a_sentence_and_changes_nothing(app, api, keeper, host,
                                                                                      case):
    value, status, sentence = REFUSALS[case]
    before = settings_events(app)
    response = api(keeper).patch(ENV_URL, json={"release_stream": "CHANGED", "sandbox_paths": value(host)})
    assert response.status_code == status, response.json
    assert sentence in response.json["error"]
    saved = api("member").get(ENV_URL).json
    assert (saved["release_stream"], saved["sandbox_paths"]) == ("QA", [])  # nothing of the change is kept
    assert settings_events(app) == before


def test_the_refusal_names_the_allowed_roots_and_what_to_do(api, keeper, host):
    response = api(keeper).patch(ENV_URL, json={"sandbox_paths": [ro(host.docs), rw("/etc")]})
    assert response.status_code == 422
    assert response.json["error"] == not_allowed(host, "/etc")


def test_a_symlink_is_judged_by_where_it_leads(api, keeper, host):
    (host.shop / "data").symlink_to(host.instance)
    (host.shop / "system").symlink_to("/etc")
    (host.shop / "site").symlink_to(host.docs)
    response = api(keeper).patch(ENV_URL, json={"sandbox_paths": [rw(host.shop / "data")]})
    assert response.status_code == 422
    assert response.json["error"] == (
        f"sandbox_paths: {host.shop}/data (a symlink to {host.instance}) is the instance directory (INSTANCE_DIR) "
        f"({host.instance}), which no release command may see; choose another path.")
    response = api(keeper).patch(ENV_URL, json={"sandbox_paths": [ro(host.shop / "system")]})
    assert response.status_code == 422
    assert response.json["error"] == not_allowed(host, f"{host.shop}/system (a symlink to /etc)")
    # One that leads to another allowed place is kept as written: each run resolves it again.
    response = api(keeper).patch(ENV_URL, json={"sandbox_paths": [ro(host.shop / "site")]})
    assert response.status_code == 200 and response.json["sandbox_paths"] == [ro(host.shop / "site")]


def test_creating_an_environment_with_a_refused_path_creates_nothing(app, api, keeper, host):
    response = api("admin").post("/api/v1/projects/svc/environments",
                                 json={"name": "shop", "release_stream": "PROD", "sandbox_paths": [rw(host.instance)]})
    assert response.status_code == 422 and "is the instance directory" in response.json["error"]
    assert api("member").get("/api/v1/projects/svc/environments/shop").status_code == 404


def test_without_allowed_roots_no_environment_gets_a_host_path(app, api, keeper, host):
    app.config["SANDBOX_ALLOWED_PATHS"] = ()  # the default
    response = api(keeper).patch(ENV_URL, json={"sandbox_paths": [ro(host.shop)]})
    assert response.status_code == 422
    assert response.json["error"] == (
        f"sandbox_paths: {host.shop} cannot be given to the release command because this installation allows no "
        "host paths (SANDBOX_ALLOWED_PATHS is empty); ask the operator to allow it.")
    assert api(keeper).patch(ENV_URL, json={"sandbox_paths": []}).status_code == 200


# -- the settings form ------------------------------------------------------------------------------

def settings_form(**overrides) -> dict:
    form = {"release_stream": "QA", "mode": "approval", "hook_ref": "", "release_command": "",
            "hook_timeout_seconds": "300", "release_timeout_seconds": "3600", "approval_timeout_hours": "",
            "sandbox_paths": ""}
    form.update(overrides)
    return {key: value for key, value in form.items() if value is not None}


def field_error(text: str, field: str) -> str:
    found = re.search(rf'<p class="field-error" id="{field}-error">([^<]*)</p>', text)
    return found.group(1) if found else ""


def textarea(text: str) -> str:
    return re.search(r'<textarea name="sandbox_paths"[^>]*>([^<]*)</textarea>', text).group(1)


def test_the_settings_form_saves_host_paths_as_lines_and_shows_them_again(api, web, keeper, host):
    client = web(keeper)
    page = client.get(PAGE).text
    assert textarea(page) == "" and ", ".join(host.allowed) in page  # says what the operator allows
    lines = f"{host.shop} rw\r\n\r\n  {host.docs}\t ro \r\n{host.opt}/deploy"
    response = client.post(SETTINGS, data=settings_form(sandbox_paths=lines, confirm_weakening="1",
                                                         csrf_token=client.csrf))
    assert response.status_code == 303, response.text
    assert api("member").get(ENV_URL).json["sandbox_paths"] == [rw(host.shop), ro(host.docs), ro(host.opt / "deploy")]
    page = client.get(PAGE).text
    assert textarea(page) == f"{host.shop} rw\n{host.docs} ro\n{host.opt}/deploy ro"
    assert f"Settings saved: {LABEL}." in page
    history = re.search(r'<section id="settings-history".*?</section>', page, re.S).group(0)
    assert (f'{LABEL}: <span class="muted">none</span> → <code>{host.shop} rw</code>, <code>{host.docs} ro</code>'
            in history)
    assert "Weakens the gate: sandbox paths" in history
    # Members see them among the settings, read-only.
    assert f"<code>{host.shop} rw</code>" in web("member").get(PAGE).text


def test_a_refused_host_path_is_shown_beside_the_field_and_nothing_is_saved(app, api, web, keeper, host):
    client = web(keeper)
    before = settings_events(app)
    response = client.post(SETTINGS, data=settings_form(release_stream="QA2", sandbox_paths=f"{host.shop} rw\n/etc rw",
                                                         csrf_token=client.csrf))
    assert response.status_code == 422
    assert field_error(response.text, "sandbox_paths") == not_allowed(host, "/etc", LABEL)
    assert 'aria-invalid="true" aria-describedby="sandbox_paths-error"' in response.text
    assert textarea(response.text) == f"{host.shop} rw\n/etc rw"  # what was typed, to correct
    response = client.post(SETTINGS, data=settings_form(sandbox_paths=f"{host.shop} rx", csrf_token=client.csrf))
    assert response.status_code == 422
    assert field_error(response.text, "sandbox_paths") == (
        f"{LABEL}, line 1: end the line with rw (writable) or ro (read-only), e.g. /srv/shop rw.")
    saved = api("member").get(ENV_URL).json
    assert (saved["release_stream"], saved["sandbox_paths"]) == ("QA", [])
    assert settings_events(app) == before


def test_a_member_forging_a_host_paths_post_gets_403(api, web, keeper, host):
    client = web("member")
    response = client.post(SETTINGS, data=settings_form(sandbox_paths=f"{host.shop} rw", csrf_token=client.csrf))
    assert response.status_code == 403
    response = web(keeper).post(SETTINGS, data=settings_form(sandbox_paths=f"{host.shop} rw"))  # no CSRF token
    assert response.status_code == 400
    assert api("member").get(ENV_URL).json["sandbox_paths"] == []


def test_paths_the_operator_has_since_disallowed_block_no_other_change_but_every_run(app, api, web, keeper, host):
    assert api(keeper).patch(ENV_URL, json={"sandbox_paths": [rw(host.shop)]}).status_code == 200
    app.config["SANDBOX_ALLOWED_PATHS"] = (str(host.docs),)  # the operator narrows the allowed roots
    client = web(keeper)
    unchanged = textarea(client.get(PAGE).text)
    response = client.post(SETTINGS, data=settings_form(mode="serial", sandbox_paths=unchanged,
                                                         confirm_weakening="1", csrf_token=client.csrf))
    assert response.status_code == 303, field_error(response.text, "sandbox_paths")
    saved = api("member").get(ENV_URL).json
    assert (saved["approval_workflow"], saved["sandbox_paths"]) == (False, [rw(host.shop)])
    # Sent again through the API, they are judged again; and so is every run.
    response = api(keeper).patch(ENV_URL, json={"sandbox_paths": [rw(host.shop)]})
    assert response.status_code == 422 and "is not under SANDBOX_ALLOWED_PATHS" in response.json["error"]
    with app.app_context(), pytest.raises(ValueError, match="is not under SANDBOX_ALLOWED_PATHS"):
        release_command_binds(saved["sandbox_paths"], app.config["SANDBOX_ALLOWED_PATHS"])


# -- weakening the gate -----------------------------------------------------------------------------

def test_adding_a_host_path_or_making_one_writable_weakens_the_gate_and_mails_the_admins(
        app, api, keeper, host, run_notify_jobs, smtp_server):
    for paths in ([ro(host.shop)], [rw(host.shop)], [rw(host.shop), ro(host.docs)]):
        assert api(keeper).patch(ENV_URL, json={"sandbox_paths": paths}).status_code == 200
        assert settings_events(app)[-1]["weakens_gate"] == ["sandbox_paths"]
    run_notify_jobs()
    texts = [text_part(message) for message in smtp_server.messages]
    assert len(texts) == 3 and all(m["To"].addresses[0].username == "admin" for m in smtp_server.messages)
    assert any(f"sandbox_paths: (none) -> {host.shop} ro  (weakens the gate)" in text for text in texts)
    assert any(f"sandbox_paths: {host.shop} ro -> {host.shop} rw  (weakens the gate)" in text for text in texts)
    assert any(f"-> {host.shop} rw, {host.docs} ro  (weakens the gate)" in text for text in texts)


def test_removing_a_host_path_or_making_one_read_only_does_not_weaken_the_gate(
        app, api, keeper, host, run_notify_jobs, smtp_server):
    assert api(keeper).patch(ENV_URL, json={"sandbox_paths": [rw(host.shop), rw(host.docs)]}).status_code == 200
    run_notify_jobs()
    announced = len(smtp_server.messages)
    for paths in ([ro(host.shop), rw(host.docs)], [rw(host.docs)], []):
        assert api(keeper).patch(ENV_URL, json={"sandbox_paths": paths}).status_code == 200
        assert settings_events(app)[-1]["weakens_gate"] == []
    run_notify_jobs()
    assert len(smtp_server.messages) == announced
    # Narrowing beside another weakening change: only that one is named.
    assert api(keeper).patch(ENV_URL, json={"sandbox_paths": [rw(host.docs)]}).status_code == 200
    changes = {"release_stream": "QA2", "sandbox_paths": [ro(host.docs)]}
    assert api(keeper).patch(ENV_URL, json=changes).status_code == 200
    assert settings_events(app)[-1]["weakens_gate"] == ["release_stream"]
    # Swapping one path for another adds a path.
    assert api(keeper).patch(ENV_URL, json={"sandbox_paths": [ro(host.shop)]}).status_code == 200
    assert settings_events(app)[-1]["weakens_gate"] == ["sandbox_paths"]


# -- the command line -----------------------------------------------------------------------------

def test_the_cli_creates_an_environment_with_host_paths_and_refuses_bad_ones(app, api, keeper, host):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["environments", "create", "svc/deploy", "--stream", "PROD", "--settings",
                                 json.dumps({"sandbox_paths": [rw(host.shop)]})])
    assert result.exit_code == 0, result.output
    assert api("member").get("/api/v1/projects/svc/environments/deploy").json["sandbox_paths"] == [rw(host.shop)]
    result = runner.invoke(args=["environments", "create", "svc/other", "--stream", "QA", "--settings",
                                 json.dumps({"sandbox_paths": [ro("/etc")]})])
    assert result.exit_code != 0 and not_allowed(host, "/etc") in result.output
    assert "Traceback" not in result.output
