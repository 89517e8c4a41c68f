"""Extension objects, created here and configured by create_app()."""
from __future__ import annotations

from flask import Flask, current_app
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from redis import Redis
from sqlalchemy import MetaData, event
from sqlalchemy.engine import Engine

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# A commit keeps what the session holds: what a request just wrote is what its answer shows,
# without reading every row back. Rules are never judged on it: each write transaction
# begins with a rollback, which expires everything (transactions.write_transaction).
db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING_CONVENTION),
                session_options={"expire_on_commit": False})
login_manager = LoginManager()
csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address)


def enable_migrations(app: Flask) -> None:
    """Flask-Migrate, for `flask db …` and for whatever else migrates (the tests' fixtures). A web
    server or a worker never migrates, so it never loads alembic: ~11 MB less in every process."""
    from flask_migrate import Migrate

    from .config import ROOT

    Migrate(app, db, directory=str(ROOT / "migrations"))


def redis_connection() -> Redis:
    """The app's Redis client (one per app, created on first use)."""
    client = current_app.extensions.get("releasegate_redis")
    if client is None:
        url = current_app.config["REDIS_URL"]
        if not url:
            raise RuntimeError("REDIS_URL is not set: start Redis and set REDIS_URL, or use `make run`.")
        client = Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        current_app.extensions["releasegate_redis"] = client
    return client


def configure_sqlite(engine: Engine, busy_seconds: float = 30) -> None:
    """WAL, foreign keys, and transactions that say up front whether they write.

    A DEFERRED transaction that reads and then writes fails at once with "database is
    locked" if another writer committed in between (WAL cannot upgrade a stale
    snapshot). So write transactions (execution option `sqlite_write`, see
    transactions.write_transaction) begin IMMEDIATE and queue behind busy_timeout, while
    reads stay DEFERRED and never block anyone. Emitting BEGIN ourselves also makes
    SQLAlchemy's SAVEPOINTs work on pysqlite.
    """
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_seconds * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        writes = connection.get_execution_options().get("sqlite_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")
