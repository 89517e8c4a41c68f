"""The hook's verdict ($RELEASE_VERDICT): rules it adds to a waiting release, and every way a
verdict can be wrong failing the release (fail closed), run by real hooks in the sandbox."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.helpers import release, trigger
from webapp.extensions import db
from webapp.models import Environment, Group, Release, User

HOOK = "svc/pre_release_hooks/pre_release_hook.py"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "hooks.md"
DROP_ORDERS = [{"resourceType": "postgres", "resourceName": "orders", "resourcePath": "db/orders.json",
                "changeType": "DELETE"}]
API_UPDATE = [{"resourceType": "service", "resourceName": "api", "resourcePath": "svc/api.json",
               "changeType": "UPDATE_IN_PLACE"}]


def writes_verdict(verdict: str, exit_code: int = 2) -> dict[str, str]:
    """A hook that writes `verdict` (text, as it is) to $RELEASE_VERDICT and exits `exit_code`."""
    return {HOOK: f"import os, sys\nopen(os.environ['RELEASE_VERDICT'], 'w').write({verdict!r})\n"
                  f"print('verdict written')\nsys.exit({exit_code})\n"}


def docs_example() -> str:
    """The verdict example of docs/hooks.md, as printed there."""
    text = DOCS.read_text()
    section = text[text.index("## Asking for more approvals: the verdict"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.fixture()
def dba(app, people):
    """Group dba with dana and dora, who may both approve."""
    for name in ("dana", "dora"):
        people.add(name, "approve_release")
    with app.app_context():
        group = Group(name="dba", members=list(db.session.scalars(
            sa.select(User).where(User.username.in_(("dana", "dora"))))))
        db.session.add(group)
        db.session.commit()


def stored(app, release_id: int) -> Release:
    with app.app_context():
        found = db.session.get(Release, release_id)
        db.session.expunge(found)
        return found


def set_rules(app, rules: list[dict]) -> None:
    with app.app_context():
        db.session.scalar(sa.select(Environment)).approval_rules = rules
        db.session.commit()


def test_the_documented_example_adds_a_dba_rule_for_a_dropped_database(app, api, dba, new_environment, run_jobs):
    new_environment({HOOK: docs_example()})
    dropping = trigger(api, resources=DROP_ORDERS)
    run_jobs()
    found = stored(app, dropping)
    assert found.state == "PENDING_APPROVAL"
    assert found.approval_rules == [{"name": "default", "group": None, "approvals": 1},
                                    {"name": "dba", "group": "dba", "approvals": 1}]
    assert found.approval_reason == "DELETE of postgres orders: a DBA must look"
    # approver (not a DBA) meets the default rule; the release waits for a DBA.
    assert api("approver").post(f"/api/v1/releases/{dropping}/approve", json={}).status_code == 200
    assert stored(app, dropping).state == "PENDING_APPROVAL"
    assert api("dana").post(f"/api/v1/releases/{dropping}/approve", json={}).status_code == 200
    assert stored(app, dropping).state == "APPROVED"


def test_the_documented_example_lets_other_changes_through(app, api, dba, new_environment, run_jobs):
    new_environment({HOOK: docs_example()})
    release_id = trigger(api, resources=API_UPDATE)
    run_jobs()
    assert release(api, release_id)["state"] == "SUCCEEDED"


def test_a_verdict_raises_the_count_of_an_environment_rule_but_never_lowers_one(app, api, dba, new_environment,
                                                                             run_jobs):
    new_environment(writes_verdict(json.dumps({"rules": [{"name": "dba", "group": "dba", "approvals": 2}]})))
    set_rules(app, [{"name": "dba", "group": "dba", "approvals": 1}])
    raised = trigger(api)
    run_jobs()
    assert stored(app, raised).approval_rules == [{"name": "dba", "group": "dba", "approvals": 2}]
    assert api("dana").post(f"/api/v1/releases/{raised}/approve", json={}).status_code == 200
    assert stored(app, raised).state == "PENDING_APPROVAL"  # one DBA is no longer enough
    api("dana").post(f"/api/v1/releases/{raised}/reject", json={})

    new_environment(writes_verdict(json.dumps({"rules": [{"name": "dba", "group": "dba", "approvals": 1}]})),
                    name="second")
    with app.app_context():
        db.session.scalar(sa.select(Environment).where(Environment.name == "second")).approval_rules = [
            {"name": "dba", "group": "dba", "approvals": 2}]
        db.session.commit()
    lowered = trigger(api, path="svc/second")
    run_jobs()
    assert stored(app, lowered).approval_rules == [{"name": "dba", "group": "dba", "approvals": 2}]


def test_a_verdict_after_exit_0_is_ignored(app, api, dba, new_environment, run_jobs):
    new_environment(writes_verdict(json.dumps({"rules": [{"name": "dba", "group": "dba", "approvals": 1}]}), 0))
    release_id = trigger(api)
    run_jobs()
    found = stored(app, release_id)
    assert found.state == "SUCCEEDED" and found.approval_rules is None


@pytest.mark.parametrize("verdict, message", [
    ('{"rules": [{"name": "dba", "group": "dbas", "approvals": 1}]}',
     "names the group \u201cdbas\u201d, which does not exist"),
    ('{"rules": [{"name": "dba", "group": "dba", "approvals": 3}]}',
     "needs 3 approvals from group dba, but only 2 such people may approve"),
    ("{not json", "is not valid JSON"),
    ('{"rules": [{"name": "default", "group": "dba", "approvals": 1}]}', "name the verdict's rule differently"),
    ('{"approve": true}', "unknown field"),
])
def test_a_verdict_that_cannot_be_met_or_read_fails_the_release_and_frees_the_slot(app, api, dba, new_environment,
                                                                                run_jobs, verdict, message):
    new_environment(writes_verdict(verdict))
    release_id = trigger(api)
    behind = trigger(api)
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "FAILED", data
    assert message in data["error"]
    assert release(api, behind)["state"] == "FAILED"  # took the slot and ran (same hook): the queue moved


def test_a_verdict_that_is_a_link_fails_and_is_never_read_through(app, api, dba, new_environment, run_jobs):
    new_environment({HOOK: "import os, sys\nos.symlink('/etc/passwd', os.environ['RELEASE_VERDICT'])\nsys.exit(2)\n"})
    release_id = trigger(api)
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "FAILED"
    assert "is not a regular file" in data["error"] and "root:" not in data["error"]


def test_the_release_command_gets_no_verdict_path(app, api, new_environment, run_jobs):
    new_environment({HOOK: "import os, sys\nprint('hook sees', 'RELEASE_VERDICT' in os.environ)\nsys.exit(0)\n"},
                    release_command='echo "command sees ${RELEASE_VERDICT:-nothing}"')
    release_id = trigger(api)
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "SUCCEEDED"
    assert "hook sees True" in data["hook"]["output"]
    assert "command sees nothing" in data["execution"]["output"]


def test_a_verdict_folder_swapped_for_a_link_is_never_read_through(app, api, dba, new_environment, run_jobs,
                                                                  tmp_path):
    """Without the sandbox the hook can reach its workspace: it moves the verdict's folder away
    and links a folder of its choosing in its place."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "verdict.json").write_text('{"reason": "read through a link"}')
    new_environment({HOOK: "import os, sys\nfolder = os.path.dirname(os.environ['RELEASE_VERDICT'])\n"
                           f"os.rename(folder, folder + '.moved')\nos.symlink({str(elsewhere)!r}, folder)\n"
                           "sys.exit(2)\n"})
    app.config["HOOK_SANDBOX"] = "none"
    release_id = trigger(api)
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "FAILED", data
    assert "is not a regular file" in data["error"]


@pytest.mark.parametrize("hook, message", [
    ("open(os.environ['RELEASE_VERDICT'], 'w').write('[' * 60000)", "nested too deeply"),
    ("os.mkdir(os.environ['RELEASE_VERDICT'])", "is not a regular file"),
])
def test_a_verdict_that_breaks_the_reader_still_fails_the_release_with_a_sentence(app, api, new_environment,
                                                                                  run_jobs, hook, message):
    new_environment({HOOK: f"import os, sys\n{hook}\nsys.exit(2)\n"})
    release_id = trigger(api)
    behind = trigger(api)
    run_jobs()
    data = release(api, release_id)
    assert data["state"] == "FAILED" and message in data["error"], data
    assert release(api, behind)["state"] == "FAILED"  # the slot moved on to the next one
