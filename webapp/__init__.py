"""Releasegate: a self-hosted release approval workflow."""
from __future__ import annotations

import click
from flask import Flask

from .config import load_config
from .extensions import configure_sqlite, csrf, db, enable_migrations, limiter, login_manager


def create_app(config: dict | None = None) -> Flask:
    """Build the app. No connections, migrations or other side effects happen here."""
    from .config import ROOT

    app = Flask(__name__, static_folder=str(ROOT / "static"), template_folder=str(ROOT / "templates"),
                instance_path=str(ROOT / "instance"))
    app.config.update(load_config())
    app.config.update(config or {})
    from .intake.ids import IdConverter

    app.url_map.converters["int"] = IdConverter  # every <int:…> is a row id, bounded (intake/ids.py)
    if not app.config["SECRET_KEY"]:
        raise SystemExit("SECRET_KEY is not set: put a long random value in the environment or in .env "
                         "(only RELEASEGATE_ENV=development may run without one).")

    db.init_app(app)
    if click.get_current_context(silent=True) is not None:  # the `flask` command: `flask db upgrade` and the rest
        enable_migrations(app)
    login_manager.init_app(app)
    csrf.init_app(app)
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config["REDIS_URL"] or "memory://")
    limiter.init_app(app)
    if app.config.get("TRUSTED_PROXIES"):
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["TRUSTED_PROXIES"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    with app.app_context():
        for engine in db.engines.values():
            configure_sqlite(engine, app.config.get("SQLITE_BUSY_SECONDS", 30))

    from . import auth, errors, security
    from .cli import register_cli
    from .intake import storable
    from .permissions import permission_context
    from .views import (
        api_groups,  # noqa: F401  (adds the /api/v1/groups routes to the api blueprint)
        web,
    )
    from .views.admin import admin
    from .views.admin_groups import admin_groups
    from .views.api import api
    from .views.auth import auth as auth_pages
    from .views.email_links import email_pages
    from .views.environment_pages import environment_pages
    from .views.inbox import inbox
    from .views.integrations import integrations
    from .views.metrics import metrics
    from .views.pages import pages
    from .views.release_pages import release_pages
    from .views.slack import slack
    from .views.trigger_page import trigger_page

    auth.init_app(app)
    storable.init_app(app)  # after auth: who asks is known before what they sent is judged
    errors.init_app(app)
    security.init_app(app)
    app.context_processor(permission_context)
    web.init_app(app)  # the template helpers every page shares: `ago`, `mentions`
    for blueprint in (api, auth_pages, pages, environment_pages, release_pages, inbox, trigger_page, admin,
                      admin_groups, email_pages, integrations, slack):
        app.register_blueprint(blueprint)
    app.register_blueprint(metrics)  # GET /metrics for Prometheus, behind METRICS_TOKEN
    register_cli(app)
    return app
