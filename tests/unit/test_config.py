"""Configuration: safe by default."""
from __future__ import annotations

import pytest

from webapp import create_app


def test_outside_development_a_missing_secret_key_stops_the_app_with_a_sentence(monkeypatch):
    monkeypatch.setenv("RELEASEGATE_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "")
    with pytest.raises(SystemExit, match="SECRET_KEY is not set"):
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"})


def test_development_runs_without_a_secret_key(monkeypatch):
    monkeypatch.setenv("RELEASEGATE_ENV", "development")
    monkeypatch.setenv("SECRET_KEY", "")
    assert create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://"}).config["SECRET_KEY"]


def test_an_empty_base_url_is_the_default_address_not_links_without_one(monkeypatch):
    monkeypatch.setenv("BASE_URL", "")
    assert create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": "x"}).config["BASE_URL"] == \
        "http://127.0.0.1:5000"


def test_sandbox_allowed_paths_are_absolute_directories_separated_by_colons(monkeypatch):
    monkeypatch.setenv("SANDBOX_ALLOWED_PATHS", " /srv/shop/ : /opt//deploy/. ::/srv/shop")
    app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": "x"})
    assert app.config["SANDBOX_ALLOWED_PATHS"] == ("/srv/shop", "/opt/deploy")


def test_no_host_path_is_allowed_by_default(monkeypatch):
    monkeypatch.delenv("SANDBOX_ALLOWED_PATHS", raising=False)
    assert create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": "x"}).config["SANDBOX_ALLOWED_PATHS"] == ()


@pytest.mark.parametrize(("value", "sentence"), [
    ("/srv:srv/shop", "SANDBOX_ALLOWED_PATHS holds 'srv/shop', which is not an absolute path; list absolute "
                      "directories separated by ':' (e.g. /srv/shop:/opt/deploy)."),
    ("/srv/..", "SANDBOX_ALLOWED_PATHS cannot allow / itself (every host path); name the directories that "
                "release commands may use."),
])
def test_a_sandbox_allowed_path_that_is_not_an_absolute_directory_stops_the_app_with_a_sentence(
        monkeypatch, value, sentence):
    monkeypatch.setenv("SANDBOX_ALLOWED_PATHS", value)
    with pytest.raises(SystemExit) as stopped:
        create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": "x"})
    assert str(stopped.value) == sentence
