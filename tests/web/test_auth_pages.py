"""Signing in and out, safe redirects, and HTMX answers for ended sessions."""
from __future__ import annotations

import re

import pytest
import sqlalchemy as sa

from webapp.extensions import db
from webapp.models import User


def csrf_of(page) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def test_anonymous_visitors_are_sent_to_sign_in_and_back(app, people):
    client = app.test_client()
    response = client.get("/approvals")
    assert response.status_code == 302 and response.location.endswith("/sign-in?next=/approvals")
    token = csrf_of(client.get(response.location))
    response = client.post("/sign-in", data={"csrf_token": token, "username": "dev",
                                             "password": "dev-password-123", "next": "/approvals"})
    assert response.status_code == 302 and response.location == "/approvals"


@pytest.mark.parametrize("target", ["//evil.example", "/\\evil.example", "/%09/evil.example", "/\t/evil.example",
                                    "https:evil.example", "javascript:alert(1)", "https://evil.example/"])
def test_next_never_leaves_the_site(app, people, target):
    client = app.test_client()
    token = csrf_of(client.get("/sign-in"))
    response = client.post("/sign-in", query_string={"next": target},
                           data={"csrf_token": token, "username": "dev", "password": "dev-password-123"})
    assert response.status_code == 302 and response.location == "/"


def test_a_wrong_password_gets_a_sentence_and_no_session(app, people):
    client = app.test_client()
    token = csrf_of(client.get("/sign-in"))
    response = client.post("/sign-in", data={"csrf_token": token, "username": "dev", "password": "nope"})
    assert response.status_code == 401 and "do not match an active account" in response.text
    assert client.get("/").status_code == 302


def test_sign_in_without_the_csrf_token_is_refused(app, people):
    response = app.test_client().post("/sign-in", data={"username": "dev", "password": "dev-password-123"})
    assert response.status_code == 400 and "CSRF" in response.text


def test_sign_out_is_a_post_and_ends_the_session(web):
    client = web("dev")
    assert client.get("/").status_code == 200
    assert client.get("/sign-out").status_code == 405  # no state change on GET
    client.post("/sign-out", data={"csrf_token": client.csrf})
    assert client.get("/").status_code == 302


def test_a_deactivated_user_is_signed_out_on_the_next_request(app, web):
    client = web("dev")
    with app.app_context():
        db.session.execute(sa.update(User).where(User.username == "dev").values(active=False))
        db.session.commit()
    assert client.get("/").status_code == 302


def test_an_htmx_request_without_a_session_gets_a_redirect_header_not_a_page(app):
    response = app.test_client().get("/fragments/approvals-count",
                                     headers={"HX-Request": "true", "HX-Current-URL": "http://x/approvals"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/sign-in?next=/approvals"
    assert "<html" not in response.text


def test_pages_carry_a_strict_content_security_policy(web):
    response = web("dev").get("/")
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "<script>" not in response.text and " style=" not in response.text and "hx-on" not in response.text


def test_repeated_failed_sign_ins_for_one_username_are_slowed_down(app, people):
    client = app.test_client()
    token = csrf_of(client.get("/sign-in"))
    for _ in range(5):
        client.post("/sign-in", data={"csrf_token": token, "username": "dev", "password": "guess"})
    response = client.post("/sign-in", data={"csrf_token": token, "username": "dev", "password": "dev-password-123"})
    assert response.status_code == 429 and "Too many sign-in attempts" in response.text
    other = client.post("/sign-in", data={"csrf_token": token, "username": "member",
                                          "password": "member-password-123"})
    assert other.status_code == 302  # another username from the same address still signs in


def test_a_password_reset_ends_existing_sessions_and_reactivation_does_not_revive_them(app, web):
    """An admin resets dev's password on the admin page (accounts.reset_password): the browser dev
    was signed in with is signed out at its next request, a plain page and an htmx poll alike.
    Then a deactivation and a reactivation: the session dev had begun with the new password
    stays ended too."""
    old_session = web("dev")
    remembered = app.test_client()  # signed in with "remember me": a lasting cookie beside the session
    token = csrf_of(remembered.get("/sign-in"))
    assert remembered.post("/sign-in", data={"csrf_token": token, "username": "dev", "password": "dev-password-123",
                                             "remember": "on"}).status_code == 302
    assert old_session.get("/").status_code == 200 and remembered.get("/").status_code == 200
    admin = web("admin")
    with app.app_context():
        dev = db.session.scalar(sa.select(User.id).where(User.username == "dev"))
    response = admin.post(f"/admin/users/{dev}/password",
                          data={"csrf_token": admin.csrf, "password": "brand new passphrase"})
    assert response.status_code == 302, response.text
    response = old_session.get("/approvals")
    assert response.status_code == 302 and response.location.endswith("/sign-in?next=/approvals")
    response = old_session.get("/fragments/approvals-count", headers={"HX-Request": "true"})
    assert response.status_code == 401 and "HX-Redirect" in response.headers
    remembered.delete_cookie("session")  # a new browser session: only the remember-me cookie is left
    assert remembered.get("/").status_code == 302

    client = app.test_client()
    token = csrf_of(client.get("/sign-in"))
    assert client.post("/sign-in", data={"csrf_token": token, "username": "dev",
                                         "password": "brand new passphrase"}).status_code == 302
    assert client.get("/").status_code == 200
    for action in ("deactivate", "reactivate"):
        assert admin.post(f"/admin/users/{dev}/{action}", data={"csrf_token": admin.csrf}).status_code == 302
    assert client.get("/").status_code == 302
    assert old_session.get("/").status_code == 302


def test_api_tokens_record_when_they_were_last_used(app, api, people):
    from webapp.models import ApiToken

    assert api("dev").get("/api/v1/projects").status_code == 200
    with app.app_context():
        token = db.session.scalar(sa.select(ApiToken).join(User).where(User.username == "dev"))
        assert token.last_used_at is not None


def test_cookies_are_http_only_same_site_and_remember_me_sets_a_lasting_cookie(app, people):
    client = app.test_client()
    token = csrf_of(client.get("/sign-in"))
    response = client.post("/sign-in", data={"csrf_token": token, "username": "dev",
                                             "password": "dev-password-123", "remember": "on"})
    cookies = response.headers.getlist("Set-Cookie")
    remember = next(c for c in cookies if c.startswith("remember_token="))
    session = next(c for c in cookies if c.startswith("session="))
    for cookie in (remember, session):
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Expires=" in remember
    assert "Secure" not in session  # served over plain http here


def test_cookies_are_secure_when_served_over_https(app_config):
    from webapp import create_app

    app = create_app({**app_config, "BASE_URL": "https://releases.example.com"})
    assert app.config["SESSION_COOKIE_SECURE"] is True and app.config["REMEMBER_COOKIE_SECURE"] is True


# -- a bearer header means the token alone (issue 10, item 9) ------------------------------------------

@pytest.mark.parametrize(("method", "url", "data"), [
    ("post", "/api/v1/projects", None),  # the API, body sent as JSON below
    ("post", "/admin/tokens", {"name": "made without CSRF"}),  # a page form
])
def test_a_bad_bearer_token_beside_a_session_is_refused_and_does_not_skip_csrf(app, web, method, url, data):
    from webapp.models import ApiToken, Project

    admin = web("admin")  # a signed-in browser; the forged request carries no CSRF token
    headers = {"Authorization": "Bearer not-a-token"}
    if data is None:
        response = admin.post(url, json={"name": "forged", "repo": "/tmp/x"}, headers=headers)
    else:
        response = admin.post(url, data=data, headers=headers)
    assert response.status_code == 401 and "API token is invalid" in response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count(Project.id))) == 0
        assert db.session.scalar(sa.select(sa.func.count(ApiToken.id)).where(ApiToken.name == "made without CSRF")) == 0


def test_a_good_bearer_token_beside_a_session_acts_as_the_token_user_alone(app, web, people):
    admin = web("admin")
    response = admin.post("/api/v1/projects", json={"name": "forged", "repo": "/tmp/x"},
                          headers=people.headers("member"))
    assert response.status_code == 403  # the member's token, not the admin's session
    assert admin.get("/api/v1/projects", headers=people.headers("member")).status_code == 200
    assert admin.get("/").status_code == 200  # the browser session itself is untouched


# -- signing out ends the session for good (issue 10, item 11) -------------------------------------------

@pytest.mark.parametrize("remember", [False, True])
def test_a_copy_of_the_cookies_taken_before_signing_out_no_longer_works(app, people, remember):
    client = app.test_client()
    token = csrf_of(client.get("/sign-in"))
    form = {"csrf_token": token, "username": "dev", "password": "dev-password-123"}
    assert client.post("/sign-in", data={**form, **({"remember": "on"} if remember else {})}).status_code == 302
    copied = {name: client.get_cookie(name).value for name in ("session", "remember_token")
              if client.get_cookie(name) is not None}
    assert client.post("/sign-out", data={"csrf_token": token}).status_code == 302
    thief = app.test_client()
    for name, value in copied.items():
        thief.set_cookie(name, value)
    response = thief.get("/")
    assert response.status_code == 302 and "/sign-in" in response.location


# -- unknown usernames cost an argon2 verification too (issue 10, item 12) --------------------------------

@pytest.mark.parametrize("username", ["nobody", "", "gone"])
def test_signing_in_as_an_unknown_or_inactive_user_verifies_a_password_all_the_same(app, people, monkeypatch,
                                                                                    username):
    from argon2 import PasswordHasher

    with app.app_context():
        db.session.execute(sa.update(User).where(User.username == "member").values(username="gone", active=False))
        db.session.commit()
    client = app.test_client()
    token = csrf_of(client.get("/sign-in"))
    verified = []
    real_verify = PasswordHasher.verify

    def counting_verify(self, hash_, password):
        verified.append((self.time_cost, self.memory_cost))
        return real_verify(self, hash_, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting_verify)
    response = client.post("/sign-in", data={"csrf_token": token, "username": username,
                                             "password": "member-password-123"})
    assert response.status_code == 401 and "do not match an active account" in response.text
    assert verified == [(app.config["ARGON2_TIME_COST"], app.config["ARGON2_MEMORY_KIB"])]
