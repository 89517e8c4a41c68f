"""Where webhooks may go: loopback and link-local addresses refused unless
WEBHOOK_ALLOW_LOCAL=1, judged again at every delivery (DNS rebinding), TLS still verified; and
the admin pages for webhooks."""
from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from tests.helpers import trigger
from tests.worker.test_webhooks import (
    WAITS,
    add_webhook,
    app_config,  # noqa: F401  (a fixture: this module's settings too)
    deliveries,
    environment_id,
)

# -- loopback and link-local destinations (issue 10, item 15) -------------------------------------------

@pytest.mark.parametrize(("address", "local"), [
    ("127.0.0.1", True), ("127.255.3.4", True), ("::1", True), ("169.254.169.254", True), ("fe80::1", True),
    ("fe80::1%2", True), ("::ffff:127.0.0.1", True), ("::ffff:169.254.169.254", True), ("0.0.0.0", True),
    ("::", True), ("10.0.0.5", False), ("172.16.1.1", False), ("192.168.1.10", False), ("fd00::5", False),
    ("8.8.8.8", False), ("2001:db8::1", False), ("::ffff:10.0.0.5", False),
])
def test_loopback_link_local_and_unspecified_addresses_are_local_and_private_ranges_are_not(address, local):
    from webapp.notify.checked_http import local_address

    assert local_address(address) is local


def _deliver_once(app, api, web, new_environment, run_jobs, run_notify_jobs, url: str):
    new_environment(WAITS)
    assert add_webhook(web, url).status_code == 302
    app.config["WEBHOOK_ALLOW_LOCAL"] = False  # checked when sending, not only when the URL was saved
    trigger(api, "dev")
    run_jobs()
    run_notify_jobs()
    [delivery] = deliveries(app)
    return delivery


def test_a_loopback_destination_is_refused_at_delivery_recorded_as_failed_and_never_sent(
        app, api, web, new_environment, run_jobs, run_notify_jobs, httpserver):
    httpserver.expect_request("/jira").respond_with_data("ok")
    url = httpserver.url_for("/jira").replace("localhost", "127.0.0.1")
    delivery = _deliver_once(app, api, web, new_environment, run_jobs, run_notify_jobs, url)
    assert httpserver.log == []
    assert delivery.status == "failed" and delivery.attempts == 1 and delivery.next_attempt_at is None
    assert "127.0.0.1" in delivery.last_error and "WEBHOOK_ALLOW_LOCAL" in delivery.last_error


def test_a_name_is_judged_by_the_address_it_resolves_to_when_the_delivery_is_sent(
        app, api, web, new_environment, run_jobs, run_notify_jobs, httpserver):
    httpserver.expect_request("/jira").respond_with_data("ok")
    url = httpserver.url_for("/jira")
    assert url.startswith("http://localhost:")  # a name, not an address: saved without the setting too
    delivery = _deliver_once(app, api, web, new_environment, run_jobs, run_notify_jobs, url)
    assert httpserver.log == []
    assert delivery.status == "failed" and "localhost resolves to" in delivery.last_error


def test_with_the_setting_a_local_destination_gets_the_delivery(app, api, web, new_environment, run_jobs,
                                                                 run_notify_jobs, httpserver):
    httpserver.expect_request("/jira").respond_with_data("ok")
    new_environment(WAITS)
    add_webhook(web, httpserver.url_for("/jira").replace("localhost", "127.0.0.1"))
    trigger(api, "dev")
    run_jobs()
    run_notify_jobs()
    assert len(httpserver.log) == 1 and deliveries(app)[0].status == "succeeded"


def test_https_deliveries_still_verify_the_receivers_certificate(app, api, web, new_environment, run_jobs,
                                                                 run_notify_jobs):
    """The checked connection (notify/checked_http.py) keeps TLS and its verification."""
    import http.server
    import ssl
    import threading

    import trustme

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    trustme.CA().issue_cert("localhost").configure_cert(context)  # signed by nobody this machine trusts
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        new_environment(WAITS)
        add_webhook(web, f"https://localhost:{server.server_address[1]}/hook")
        trigger(api, "dev")
        run_jobs()
        run_notify_jobs()
    finally:
        server.shutdown()
    [delivery] = deliveries(app)
    assert delivery.status == "retrying" and "CERTIFICATE_VERIFY_FAILED" in delivery.last_error


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "https://[::1]/hook", "http://169.254.169.254/latest",
                                 "http://[fe80::1]/x", "http://[::ffff:127.0.0.1]/x", "http://0.0.0.0:9000/",
                                 "http://127.1/hook", "http://2130706433/hook"])
def test_a_literal_loopback_or_link_local_address_is_refused_when_the_webhook_is_saved(app, web, url):
    app.config["WEBHOOK_ALLOW_LOCAL"] = False
    response = add_webhook(web, url)
    assert response.status_code == 422 and "WEBHOOK_ALLOW_LOCAL" in response.text
    assert "No webhooks yet" in web("admin").get("/admin/webhooks").text


def test_private_addresses_stay_allowed_for_self_hosted_receivers(app, web):
    app.config["WEBHOOK_ALLOW_LOCAL"] = False
    for url in ("http://10.0.0.5/jira", "https://192.168.1.20:8443/hook", "http://[fd00::5]/x"):
        assert add_webhook(web, url, name=url[7:20]).status_code == 302


# -- the admin pages ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", ["ftp://example.com/hook", "javascript:alert(1)", "file:///etc/passwd",
                                 "example.com/hook", "http:///nohost", "https://user:pw@example.com/"])
def test_only_http_and_https_urls_are_accepted(app, web, url):
    response = add_webhook(web, url)
    assert response.status_code == 422
    assert "http://" in response.text or "credentials" in response.text
    assert deliveries(app) == []
    assert "No webhooks yet" in web("admin").get("/admin/webhooks").text


def test_an_admin_adds_edits_and_deletes_a_webhook_and_each_change_is_audited(app, web, new_environment):
    from webapp.extensions import db
    from webapp.models import AuditEvent, WebhookEndpoint

    new_environment(WAITS)
    response = add_webhook(web, "https://hooks.example.com/a", secret="")
    assert response.status_code == 201
    assert "whsec_" in response.text  # a generated secret, shown once
    with app.app_context():
        endpoint = db.session.scalar(sa.select(WebhookEndpoint))
        assert endpoint.secret.startswith("whsec_") and endpoint.secret in response.text
        endpoint_id, secret = endpoint.id, endpoint.secret
    admin = web("admin")
    page = admin.get(f"/admin/webhooks/{endpoint_id}")
    assert page.status_code == 200 and secret not in page.text  # write-only afterwards
    response = admin.post(f"/admin/webhooks/{endpoint_id}", data={
        "csrf_token": admin.csrf, "name": "JIRA prod", "url": "https://hooks.example.com/b", "secret": "",
        "events": ["release.approved", "release.rejected"], "format": "slack", "scope": "some",
        "environments": [str(environment_id(app))], "active": "on"})
    assert response.status_code == 302
    with app.app_context():
        endpoint = db.session.get(WebhookEndpoint, endpoint_id)
        assert (endpoint.name, endpoint.url, endpoint.events, endpoint.format, endpoint.all_environments,
                [e.name for e in endpoint.environments], endpoint.secret) == (
            "JIRA prod", "https://hooks.example.com/b", ["release.approved", "release.rejected"], "slack", False,
            ["env"], secret)
    response = admin.post(f"/admin/webhooks/{endpoint_id}/delete", data={"csrf_token": admin.csrf})
    assert response.status_code == 302
    with app.app_context():
        assert db.session.scalar(sa.select(WebhookEndpoint)) is None
        reasons = db.session.scalars(sa.select(AuditEvent.reason).where(AuditEvent.action == "webhook")).all()
        assert reasons == ["webhook JIRA created", "webhook JIRA prod changed", "webhook JIRA prod deleted with its "
                           "delivery log"]
        details = db.session.scalars(sa.select(AuditEvent.details).where(AuditEvent.action == "webhook")).all()
        assert secret not in json.dumps(details)


def test_a_webhook_needs_an_event_and_some_environments_when_not_all(web):
    response = add_webhook(web, "https://hooks.example.com/a", events=[])
    assert response.status_code == 422 and "Choose at least one event" in response.text
    response = add_webhook(web, "https://hooks.example.com/a", environments=[])
    assert response.status_code == 422 and "Choose at least one environment" in response.text


def test_webhook_pages_are_for_admins_only(app, web, people, new_environment, run_jobs, run_notify_jobs, api,
                                          httpserver):
    httpserver.expect_request("/x").respond_with_data("ok")
    people.add("usermanager", "manage_users")
    new_environment(WAITS)
    add_webhook(web, httpserver.url_for("/x"))
    trigger(api, "dev")
    run_jobs()
    run_notify_jobs()
    [delivery] = deliveries(app)
    reads = ["/admin/webhooks", f"/admin/webhooks/{delivery.endpoint_id}",
             f"/admin/webhooks/deliveries/{delivery.id}"]
    writes = ["/admin/webhooks", f"/admin/webhooks/{delivery.endpoint_id}",
              f"/admin/webhooks/{delivery.endpoint_id}/delete", f"/admin/webhooks/deliveries/{delivery.id}/redeliver"]
    admin = web("admin")
    for url in reads:
        assert admin.get(url).status_code == 200
    for name in ("member", "usermanager", "dev"):
        client = web(name)
        for url in reads:
            assert client.get(url).status_code == 403, (name, url)
        for url in writes:
            response = client.post(url, data={"csrf_token": client.csrf, "name": "x", "url": "https://e.com",
                                              "events": ["release.queued"]})
            assert response.status_code == 403, (name, url)
    anonymous = app.test_client()
    for url in reads:
        response = anonymous.get(url)
        assert response.status_code == 302 and "/sign-in" in response.headers["Location"]
    assert len(deliveries(app)) == 1 and len(httpserver.log) == 1
