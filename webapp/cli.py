"""Command line: `flask --app wsgi <group> <command>` (SPEC §7)."""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import click
import sqlalchemy as sa
from flask import Flask
from flask.cli import AppGroup

from . import environments, groups, releases
from .accounts import DEFAULT_TOKEN_DAYS, FieldError, add_grant, add_user, check_expiry_days, machine_actor, scope_label
from .auth import create_token
from .extensions import db
from .intake.resources import InvalidInput, check_slug, parse_resources
from .intake.terraform import resources_from_terraform_plan
from .intake.validate import ENVIRONMENT_FIELDS, PROJECT_FIELDS, fields
from .models import Environment, Project, User, utcnow
from .permissions import GLOBAL_ONLY, PERMISSIONS, PermissionDenied
from .transactions import Actor

CLI = Actor(None, "cli")


def _user(name: str) -> User:
    user = db.session.scalar(sa.select(User).where(User.username == name))
    if user is None:
        raise click.ClickException(f"There is no user named {name}; create it with `users create`.")
    return user


def _environment(path: str) -> Environment:
    project, _, name = path.partition("/")
    environment = db.session.scalar(sa.select(Environment).join(Project).where(
        Project.name == project, Environment.name == name))
    if environment is None:
        raise click.ClickException(f"There is no environment {path}; write it as PROJECT/ENVIRONMENT.")
    return environment


def register_cli(app: Flask) -> None:
    users = AppGroup("users", help="Create users and grant permissions.")
    tokens = AppGroup("tokens", help="API tokens.")
    projects = AppGroup("projects", help="Projects.")
    envs = AppGroup("environments", help="Environments.")
    release_group = AppGroup("releases", help="Releases.")
    group_group = AppGroup("groups", help="Groups of users: their members and grants.")

    @users.command("create")
    @click.argument("name")
    @click.option("--email", default="")
    @click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
    @click.option("--admin", is_flag=True)
    def users_create(name, email, password, admin):
        if db.session.scalar(sa.select(User.id).where(User.username == name)):
            raise click.ClickException(f"A user named {name} already exists.")
        add_user(name, email, password, admin)
        click.echo(f"Created user {name}{' (admin)' if admin else ''}.")

    @users.command("grant")
    @click.argument("name")
    @click.argument("permission", type=click.Choice(list(PERMISSIONS)))
    @click.option("--environment", "environment_path", help="PROJECT/ENV; all environments when omitted.")
    def users_grant(name, permission, environment_path):
        if environment_path and permission in GLOBAL_ONLY:
            raise click.ClickException(f"{permission} exists only for all environments; drop --environment.")
        environment = _environment(environment_path) if environment_path else None
        add_grant(_user(name), permission, environment)
        click.echo(f"Granted {permission} to {name} on {environment_path or 'all environments'}.")

    def _group(name: str):
        try:
            return groups.get_group(name)
        except releases.NotFound as error:
            raise click.ClickException(str(error)) from None

    @group_group.command("list")
    def groups_list():
        found = groups.groups()
        if not found:
            click.echo("No groups yet; create one with `groups create NAME`.")
        for group in found:
            members = ", ".join(user.username for user in group.members) or "no members"
            held = ", ".join(f"{grant.permission} on {scope_label(grant.environment)}"
                             for grant in groups.grants_of(group)) or "no grants"
            click.echo(f"{group.name}: {members}; {held}")

    @group_group.command("create")
    @click.argument("name")
    @click.option("--description", default="")
    def groups_create(name, description):
        try:
            groups.create_group(machine_actor(), name=name, description=description)
        except FieldError as error:
            raise click.ClickException(str(error)) from None
        click.echo(f"Created group {name}.")

    @group_group.command("rename")
    @click.argument("name")
    @click.argument("new_name")
    def groups_rename(name, new_name):
        try:
            groups.update_group(machine_actor(), _group(name), name=new_name)
        except FieldError as error:
            raise click.ClickException(str(error)) from None
        click.echo(f"Renamed group {name} to {new_name}; the approval rules naming it follow.")

    @group_group.command("delete")
    @click.argument("name")
    def groups_delete(name):
        try:
            groups.delete_group(machine_actor(), _group(name))
        except releases.WrongState as error:
            raise click.ClickException(str(error)) from None
        click.echo(f"Deleted group {name}.")

    @group_group.command("add")
    @click.argument("name")
    @click.argument("username")
    def groups_add(name, username):
        added = groups.add_member(machine_actor(), _group(name), _user(username))
        click.echo(f"Added {username} to {name}." if added else f"{username} is in {name} already.")

    @group_group.command("remove")
    @click.argument("name")
    @click.argument("username")
    def groups_remove(name, username):
        try:
            groups.remove_member(machine_actor(), _group(name), _user(username))
        except releases.NotFound as error:
            raise click.ClickException(str(error)) from None
        click.echo(f"Removed {username} from {name}.")

    @group_group.command("grant")
    @click.argument("name")
    @click.argument("permission", type=click.Choice(list(PERMISSIONS)))
    @click.option("--environment", "environment_path", help="PROJECT/ENV; all environments when omitted.")
    def groups_grant(name, permission, environment_path):
        environment = _environment(environment_path) if environment_path else None
        try:
            groups.grant_to_group(machine_actor(), _group(name), permission, environment)
        except FieldError as error:
            raise click.ClickException(str(error)) from None
        click.echo(f"Granted {permission} to group {name} on {environment_path or 'all environments'}.")

    @group_group.command("revoke")
    @click.argument("name")
    @click.argument("permission", type=click.Choice(list(PERMISSIONS)))
    @click.option("--environment", "environment_path", help="PROJECT/ENV; all environments when omitted.")
    def groups_revoke(name, permission, environment_path):
        environment = _environment(environment_path) if environment_path else None
        group = _group(name)
        try:
            groups.revoke_group_grant(machine_actor(), group, groups.find_grant(group, permission, environment).id)
        except releases.NotFound as error:
            raise click.ClickException(str(error)) from None
        click.echo(f"Revoked {permission} from group {name} on {environment_path or 'all environments'}.")

    @tokens.command("create")
    @click.argument("name")
    @click.option("--label", default="cli")
    @click.option("--days", default=str(DEFAULT_TOKEN_DAYS), show_default=True, metavar="N|never",
                  help="Days until the token expires, or never.")
    def tokens_create(name, label, days):
        try:
            lifetime = check_expiry_days(days)
        except FieldError as error:
            raise click.ClickException(f"--days: {error}") from None
        if lifetime is None:
            click.echo("Warning: this token never expires; revoke it (API tokens page) when it is no longer used.",
                       err=True)
        expires_at = None if lifetime is None else utcnow() + timedelta(days=lifetime)
        click.echo(create_token(_user(name), label, expires_at))

    @projects.command("create")
    @click.argument("name")
    @click.option("--repo", required=True, help="Local path or any URL `git clone` accepts.")
    @click.option("--branch", default="main")
    @click.option("--hook-ref", default=None)
    @click.option("--web-url-template", default=None,
                  help="Where a commit is shown, with {sha} in it, e.g. https://git.example.com/shop/commit/{sha}.")
    def projects_create(name, repo, branch, hook_ref, web_url_template):
        try:
            environments.create_project(machine_actor(), name=check_slug(name), repo=repo, branch=branch,
                                        hook_ref=hook_ref, web_url_template=PROJECT_FIELDS["web_url_template"](
                                            web_url_template, "--web-url-template"))
        except (InvalidInput, releases.ReleaseError) as error:
            raise click.ClickException(str(error)) from None
        click.echo(f"Created project {name}.")

    @projects.command("update")
    @click.argument("name")
    @click.option("--settings", required=True,
                  help='JSON object of the project settings to change, e.g. \'{"change_windows": [{"days": ["mon"], '
                       '"start": "09:00", "end": "16:00", "tz": "Europe/Berlin"}]}\' (SPEC §7).')
    def projects_update(name, settings):
        project = db.session.scalar(sa.select(Project).where(Project.name == name))
        if project is None:
            raise click.ClickException(f"There is no project {name}.")
        editable = {key: PROJECT_FIELDS[key] for key in environments.PROJECT_EDITABLE}
        try:
            changed = environments.update_project(machine_actor(), project, fields(json.loads(settings), editable))
        except (TypeError, ValueError, InvalidInput, releases.ReleaseError) as error:
            raise click.ClickException(str(error)) from None
        click.echo(f"Updated {name}: {', '.join(changed)}." if changed else f"Nothing changed on {name}.")

    @envs.command("create")
    @click.argument("path", metavar="PROJECT/ENV")
    @click.option("--stream", "release_stream", required=True)
    @click.option("--settings", default="{}", help="JSON object of further settings (SPEC §7).")
    def environments_create(path, release_stream, settings):
        project_name, _, name = path.partition("/")
        project = db.session.scalar(sa.select(Project).where(Project.name == project_name))
        if project is None:
            raise click.ClickException(f"There is no project {project_name}.")
        try:
            values = fields({"release_stream": release_stream, **json.loads(settings)}, ENVIRONMENT_FIELDS)
            environments.create_environment(project, machine_actor(), name=check_slug(name, "environment name"),
                                            **values)
        except (TypeError, ValueError, InvalidInput, releases.ReleaseError) as error:
            raise click.ClickException(str(error)) from None
        click.echo(f"Created environment {path}.")

    @envs.command("update")
    @click.argument("path", metavar="PROJECT/ENV")
    @click.option("--settings", required=True,
                  help='JSON object of the settings to change, e.g. \'{"approval_rules": [{"name": "dba", '
                       '"group": "dba", "approvals": 1}]}\' (SPEC §7).')
    def environments_update(path, settings):
        environment = _environment(path)
        try:
            values = fields(json.loads(settings), ENVIRONMENT_FIELDS)
            changed = environments.update_environment(environment, machine_actor(), values)
        except (TypeError, ValueError, InvalidInput, releases.ReleaseError) as error:
            raise click.ClickException(str(error)) from None
        click.echo(f"Updated {path}: {', '.join(changed)}." if changed else f"Nothing changed on {path}.")

    @release_group.command("trigger")
    @click.argument("path", metavar="PROJECT/ENV")
    @click.option("--as", "username", required=True)
    @click.option("--resources", "resources_file", required=True, type=click.Path(exists=True, dir_okay=False))
    @click.option("--ref", default=None)
    @click.option("--break-glass", "break_glass", default=None, metavar="REASON",
                  help="An emergency release: skips the hook, the approvals and the change windows, and is "
                       "reviewed afterwards. Needs the break_glass permission and allow_break_glass.")
    def releases_trigger(path, username, resources_file, ref, break_glass):
        try:
            data = json.loads(Path(resources_file).read_text())
            resources = (resources_from_terraform_plan(data) if isinstance(data, dict)
                         else parse_resources(data))
            release, _ = releases.trigger(_environment(path), Actor(_user(username), "cli"), resources, ref=ref,
                                          break_glass=break_glass)
        except (ValueError, InvalidInput, releases.ReleaseError, PermissionDenied) as error:
            raise click.ClickException(str(error)) from None
        click.echo(f"Triggered release #{release.id} ({release.state}).")

    @app.cli.command("demo")
    def demo():
        """Create (or refresh) demo data and print the logins."""
        from .demo import load_demo

        for line in load_demo(Path(app.config["INSTANCE_DIR"])):
            click.echo(line)

    for command_group in (users, tokens, projects, envs, release_group, group_group):
        app.cli.add_command(command_group)
