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
