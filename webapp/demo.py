"""`flask demo`: a local git repository with a hook of our own, a project, two
environments, four users and a group of DBAs. Running it again changes nothing that exists."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import sqlalchemy as sa

from . import environments, groups
from .accounts import add_grant, add_user, machine_actor
from .extensions import db
from .models import Environment, Group, Project, User

HOOK = '''"""Demo pre-release hook: production changes wait for a human, the rest go ahead;
dropping a database anywhere needs a DBA as well (a verdict, see docs/hooks.md)."""
import json
import os
import sys

with open(sys.argv[1]) as payload_file:
    payload = json.load(payload_file)

stream = payload["releaseStream"]
print(f"Environment: {payload['environmentName']} (stream {stream})")
for change in payload["resources"]:
    print(f"  {change['changeType']:<16} {change['resourceType']} {change['resourceName']} "
          f"({change['resourcePath']})")
dropped = [c for c in payload["resources"] if c["resourceType"] in ("mysql", "postgres", "database")
           and c["changeType"] in ("DELETE", "RECREATE")]
if dropped:
    names = ", ".join(c["resourceName"] for c in dropped)
    with open(os.environ["RELEASE_VERDICT"], "w") as verdict:
        json.dump({"reason": f"Drops the database {names}: a DBA must look",
                   "rules": [{"name": "dba", "group": "dba", "approvals": 1}]}, verdict)
    print(f"Drops the database {names}: asking a DBA too.")
    sys.exit(2)
if stream == "PROD":
    print("Production release: asking for approval.")
    sys.exit(2)
print("Not production: going ahead.")
'''
DEPLOY = """#!/usr/bin/env bash
# Demo release command: shows what it would apply.
set -euo pipefail
echo "Applying release $RELEASE_ID to $ENVIRONMENT_NAME"
python3 - "$1" <<'PY'
import json, sys
for change in json.load(open(sys.argv[1]))["resources"]:
    print("  %-16s %s" % (change["changeType"], change["resourcePath"]))
PY
echo "Done."
"""
USERS = (("admin", "admin-password", True, ()), ("reviewer", "reviewer-password", False, ("approve_release",)),
         ("dba", "dba-password", False, ("approve_release",)), ("viewer", "viewer-password", False, ()))
GROUPS = {"dba": ("Database administrators: the demo hook asks one of them when a database is dropped.",
                  ("dba",))}


def make_demo_repo(path: Path) -> Path:
    if (path / ".git").exists():
        return path
    (path / "shop" / "pre_release_hooks").mkdir(parents=True)
    (path / "shop" / "pre_release_hooks" / "pre_release_hook.py").write_text(HOOK)
    (path / "deploy.sh").write_text(DEPLOY)
    (path / "deploy.sh").chmod(0o755)
    env = {**os.environ, "GIT_AUTHOR_NAME": "Releasegate demo", "GIT_AUTHOR_EMAIL": "demo@localhost",
           "GIT_COMMITTER_NAME": "Releasegate demo", "GIT_COMMITTER_EMAIL": "demo@localhost"}
    for command in (["git", "init", "-q", "-b", "main"], ["git", "add", "."],
                    ["git", "commit", "-q", "-m", "Demo project with a pre-release hook"]):
        subprocess.run(command, cwd=path, env=env, check=True)
    return path


def load_demo(instance: Path) -> list[str]:
    repo = make_demo_repo(instance / "demo-repo")
    for name, password, admin, permissions in USERS:
        user = db.session.scalar(sa.select(User).where(User.username == name))
        if user is None:
            user = add_user(name, f"{name}@example.com", password, admin)
        for permission in permissions:
            add_grant(user, permission)
    for name, (description, members) in GROUPS.items():
        group = db.session.scalar(sa.select(Group).where(Group.name == name))
        if group is None:
            group = groups.create_group(machine_actor(), name=name, description=description)
        for member in members:
            groups.add_member(machine_actor(), group, db.session.scalar(sa.select(User).where(User.username == member)))
    project = db.session.scalar(sa.select(Project).where(Project.name == "shop"))
    if project is None:
        project = environments.create_project(machine_actor(), name="shop", repo=str(repo), branch="main")
    for name, stream in (("qa", "QA"), ("prod", "PROD")):
        exists = db.session.scalar(sa.select(Environment.id).where(Environment.project_id == project.id,
                                                                   Environment.name == name))
        if exists is None:
            environments.create_environment(project, machine_actor(), name=name, release_stream=stream,
                                            release_command='./deploy.sh "$1"')
    return ["Demo data is ready: project shop with environments qa (stream QA) and prod (stream PROD); "
            "dropping a database needs a DBA too.",
            "Logins:"] + [f"  {name:<9} {password:<18} {'admin' if admin else ', '.join(perms) or 'read-only'}"
                          for name, password, admin, perms in USERS]
