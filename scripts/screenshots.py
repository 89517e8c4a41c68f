"""`make screenshots`: the dashboard, a pending release with what changed since the last
release, the inbox and an emergency release waiting for its review, with demo data, into
docs/screenshots/ (shown in the README).

Runs everything on 127.0.0.1 in a scratch instance: a private Redis, a SQLite database
with the demo data, the web app, one worker, and Debian's chromium via Playwright.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.run_local import free_port, start_redis, wait_for_port  # noqa: E402
from tests.browser_support import CHROMIUM_ARGS, chromium_path  # noqa: E402

OUT = ROOT / "docs" / "screenshots"
CHANGES = [
    {"resourceType": "service", "resourceName": "checkout", "resourcePath": "services/checkout.json",
     "changeType": "UPDATE_IN_PLACE"},
    {"resourceType": "database", "resourceName": "orders-replica", "resourcePath": "db/orders-replica.json",
     "changeType": "RECREATE"},
    {"resourceType": "queue", "resourceName": "emails", "resourcePath": "queues/emails.json",
     "changeType": "CREATE"},
]


def api(base: str, token: str, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(f"{base}/api/v1{path}", method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read() or b"{}")


def wait_state(base: str, token: str, release_id: int, state: str) -> None:
    for _ in range(100):
        if api(base, token, "GET", f"/releases/{release_id}")["state"] == state:
            return
        time.sleep(0.2)
    raise SystemExit(f"release #{release_id} did not reach {state}")


def commit_as(repo: Path, author: str, files: dict[str, str], message: str) -> None:
    """A commit by `author` in the demo repository, as a teammate would push it."""
    for name, content in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(content)
    identity = {"GIT_AUTHOR_NAME": author, "GIT_AUTHOR_EMAIL": f"{author.lower()}@example.com",
                "GIT_COMMITTER_NAME": author, "GIT_COMMITTER_EMAIL": f"{author.lower()}@example.com"}
    for command in (["git", "add", "-A"], ["git", "commit", "-q", "-m", message]):
        subprocess.run(command, cwd=repo, env={**os.environ, **identity}, check=True)


DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


def signed_in(browser, base: str, viewport: dict):
    """A new page of the demo's reviewer, signed in through the form, on the dashboard."""
    page = browser.new_page(base_url=base, viewport=viewport)
    page.goto("/sign-in")
    page.get_by_label("Username").fill("reviewer")
    page.get_by_label("Password").fill("reviewer-password")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/")
    return page


def main() -> int:
    from playwright.sync_api import sync_playwright

    scratch = Path(tempfile.mkdtemp(prefix="releasegate-screens-"))
    web_port = free_port(0)
    redis, redis_url = start_redis(free_port(0), "--save", "", "--dir", str(scratch), stdout=subprocess.DEVNULL)
    env = {**os.environ, "RELEASEGATE_ENV": "development", "RELEASEGATE_INSTANCE": str(scratch),
           "DATABASE_URL": f"sqlite:///{scratch / 'db.sqlite'}", "REDIS_URL": f"{redis_url}/0"}
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    children = [redis]
    try:
        subprocess.run([*flask, "db", "upgrade"], env=env, cwd=ROOT, check=True, capture_output=True)
        subprocess.run([*flask, "demo"], env=env, cwd=ROOT, check=True, capture_output=True)
        admin, reviewer = (subprocess.run([*flask, "tokens", "create", name], env=env, cwd=ROOT, check=True,
                                          capture_output=True, text=True).stdout.strip()
                           for name in ("admin", "reviewer"))
        children.append(subprocess.Popen([sys.executable, "-m", "worker"], env=env, cwd=ROOT,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        children.append(subprocess.Popen([*flask, "run", "--port", str(web_port)], env=env, cwd=ROOT,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_for_port(web_port, 20)
        base = f"http://127.0.0.1:{web_port}"
        done = api(base, admin, "POST", "/projects/shop/environments/qa/releases", {"resources": CHANGES[:1]})
        wait_state(base, admin, done["id"], "SUCCEEDED")
        # What runs on prod now: an approved release of the demo repository as it was made.
        earlier = api(base, admin, "POST", "/projects/shop/environments/prod/releases", {"resources": CHANGES[:1]})
        wait_state(base, admin, earlier["id"], "PENDING_APPROVAL")
        bot = api(base, reviewer, "POST", f"/releases/{earlier['id']}/approve", {"comment": "ok"})["bot_release_id"]
        wait_state(base, admin, bot, "SUCCEEDED")
        # Then the team's work since: three commits by two people, a migration among them.
        repo = scratch / "demo-repo"
        commit_as(repo, "Alice", {"services/checkout/app.py": "def checkout(cart):\n    return cart.total()\n"},
                  "Checkout v2: one page instead of three")
        commit_as(repo, "Dan", {"migrations/0007_orders_note.sql": "ALTER TABLE orders ADD note text;\n"},
                  "Orders get a free-text note")
        commit_as(repo, "Alice", {"services/checkout/app.py": "def checkout(cart):\n    return cart.total(tax=True)\n",
                                  "docs/checkout.md": "# Checkout\n\nOne page.\n"}, "Show prices with tax")
        pending = api(base, admin, "POST", "/projects/shop/environments/prod/releases",
                      {"resources": CHANGES, "ref": "main", "description": "Checkout v2 with a rebuilt replica"})
        wait_state(base, admin, pending["id"], "PENDING_APPROVAL")
        api(base, admin, "POST", "/projects/shop/environments/prod/releases", {"resources": CHANGES[:1]})

        OUT.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
            page = signed_in(browser, base, DESKTOP)
            page.screenshot(path=OUT / "dashboard.png", full_page=True)
            page.goto(f"/releases/{pending['id']}")
            page.screenshot(path=OUT / "pending-release.png", full_page=True)
            page.locator("#since").screenshot(path=OUT / "release-changes.png")
            page.goto("/approvals")
            page.screenshot(path=OUT / "approvals.png", full_page=True)
            page.goto(f"/releases/{earlier['id']}")  # approved: its page shows the bot release that applied it
            page.screenshot(path=OUT / "approved-release.png", full_page=True)
            # A phone's screen as a reviewer holds it: what shows before any scrolling.
            phone = signed_in(browser, base, PHONE)
            phone.screenshot(path=OUT / "dashboard-phone.png")
            phone.goto(f"/releases/{pending['id']}")
            phone.screenshot(path=OUT / "pending-release-phone.png")
            phone.goto("/approvals")
            phone.screenshot(path=OUT / "approvals-phone.png")
            phone.locator("header .menu > summary").click()
            phone.screenshot(path=OUT / "menu-phone.png")
            # Last, since it jumps the queue: an emergency release on qa, as on-call would trigger one.
            api(base, admin, "PATCH", "/projects/shop/environments/qa", {"allow_break_glass": True})
            hotfix = api(base, admin, "POST", "/projects/shop/environments/qa/releases", {
                "resources": CHANGES[:1], "description": "Roll back the checkout cache settings",
                "break_glass": {"reason": "Checkout fails for every customer since 14:02; rolling the cache "
                                          "settings back cannot wait for the approval round"}})
            wait_state(base, admin, hotfix["id"], "SUCCEEDED")
            page.goto(f"/releases/{hotfix['id']}")
            page.screenshot(path=OUT / "emergency-release.png", full_page=True)
            browser.close()
        print(f"Wrote {', '.join(p.name for p in sorted(OUT.glob('*.png')))} to {OUT.relative_to(ROOT)}/")
    finally:
        for child in reversed(children):
            child.terminate()
            child.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
