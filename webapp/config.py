"""Configuration read from environment variables (and `.env` when present)."""
from __future__ import annotations

import os
from pathlib import Path

from dotenv import load_dotenv

ROOT = Path(__file__).resolve().parent.parent
DEV_SECRET_KEY = "dev-only-insecure-key"


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, got {value!r}.") from None


def _seconds_list(name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        seconds = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise SystemExit(f"{name} must be whole numbers of seconds separated by commas, got {value!r}.") from None
    if any(part < 0 for part in seconds):
        raise SystemExit(f"{name} cannot hold negative waits, got {value!r}.")
    return seconds


def _directories(name: str) -> tuple[str, ...]:
    """Absolute directories separated by ':' (as in PATH), each normalised."""
    directories = []
    for part in os.environ.get(name, "").split(":"):
        part = part.strip()
        if not part:
            continue
        if not os.path.isabs(part):
            raise SystemExit(f"{name} holds {part!r}, which is not an absolute path; list absolute directories "
                             f"separated by ':' (e.g. /srv/shop:/opt/deploy).")
        directory = "/" + os.path.normpath(part).lstrip("/")
        if directory == "/":
            raise SystemExit(f"{name} cannot allow / itself (every host path); name the directories that "
                             f"release commands may use.")
        directories.append(directory)
    return tuple(dict.fromkeys(directories))


def _token(name: str, shortest: int = 32) -> str:
    """A shared secret that may be unset (""), but is never short enough to guess."""
    value = os.environ.get(name, "").strip()
    if value and len(value) < shortest:
        raise SystemExit(f"{name} must be at least {shortest} characters long; make one with "
                         f"`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`.")
    return value


def _engine_options(database_url: str) -> dict:
    options: dict = {"pool_pre_ping": True}  # a connection the server dropped is replaced, not used
    if database_url.startswith("postgresql"):
        # An unreachable server is an error after 5 s, not a request that hangs.
        options["connect_args"] = {"connect_timeout": _int("DATABASE_CONNECT_TIMEOUT", 5)}
    return options


def load_config() -> dict:
    """Build the Flask config mapping from the process environment."""
    load_dotenv(ROOT / ".env", override=False)
    env = os.environ
    instance = Path(env.get("RELEASEGATE_INSTANCE", ROOT / "instance"))
    # Production unless told otherwise: a forgotten SECRET_KEY stops the app rather than
    # falling back to a key everyone can read here.
    development = env.get("RELEASEGATE_ENV", "production") == "development"
    secret_key = env.get("SECRET_KEY") or (DEV_SECRET_KEY if development else "")
    database_url = env.get("DATABASE_URL")
    if not database_url:
        instance.mkdir(parents=True, exist_ok=True)
        database_url = f"sqlite:///{instance / 'releasegate.db'}"
    return {
        "SECRET_KEY": secret_key,
        "DEVELOPMENT": development,
        "INSTANCE_DIR": str(instance),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": env.get("REDIS_URL", ""),
        "BASE_URL": (env.get("BASE_URL") or "http://127.0.0.1:5000").rstrip("/"),
        "REPO_CACHE_DIR": env.get("REPO_CACHE_DIR") or str(instance / "repos"),
        "HOOK_PYTHON": env.get("HOOK_PYTHON", "python3"),
        # An operating-system account that hooks and release commands run as (docs/operations.md).
        "HOOK_USER": env.get("HOOK_USER", "").strip(),
        # The box hooks and release commands run in: bubblewrap, or "none" only when set (docs/operations.md).
        "HOOK_SANDBOX": env.get("HOOK_SANDBOX", "").strip() or "bwrap",
        # Host directories under which an environment may give its release command extra paths
        # (the environment's sandbox_paths); none by default (README, "Host paths").
        "SANDBOX_ALLOWED_PATHS": _directories("SANDBOX_ALLOWED_PATHS"),
        # argon2id cost of new password hashes (existing hashes keep theirs until the next sign-in).
        "ARGON2_TIME_COST": _int("ARGON2_TIME_COST", 3),
        "ARGON2_MEMORY_KIB": _int("ARGON2_MEMORY_KIB", 65536),
        "HOOK_OUTPUT_CAP": _int("HOOK_OUTPUT_CAP", 256 * 1024),
        "WORKER_LOST_SECONDS": _int("WORKER_LOST_SECONDS", 60),
        "RECONCILE_SECONDS": _int("RECONCILE_SECONDS", 5),
        "MAIL_SERVER": env.get("MAIL_SERVER", ""),
        "MAIL_PORT": _int("MAIL_PORT", 25),
        "MAIL_USERNAME": env.get("MAIL_USERNAME", ""),
        "MAIL_PASSWORD": env.get("MAIL_PASSWORD", ""),
        "MAIL_USE_TLS": _bool(env.get("MAIL_USE_TLS")),
        "MAIL_SENDER": env.get("MAIL_SENDER", "releasegate@localhost"),
        "MAIL_USE_SSL": _bool(env.get("MAIL_USE_SSL")),  # TLS from the first byte (port 465)
        "MAIL_TIMEOUT_SECONDS": _int("MAIL_TIMEOUT_SECONDS", 30),
        # Approve/Reject links in mail: how long they work.
        "EMAIL_LINK_HOURS": _int("EMAIL_LINK_HOURS", 72),
        "WEBHOOK_TIMEOUT_SECONDS": _int("WEBHOOK_TIMEOUT_SECONDS", 10),
        # Webhooks to loopback and link-local addresses (this machine, a cloud's metadata service)
        # are refused unless this is set; private ranges are always allowed (notify/webhooks.py).
        "WEBHOOK_ALLOW_LOCAL": _bool(env.get("WEBHOOK_ALLOW_LOCAL")),
        # The Slack app (docs/integrations.md, "Slack app"): the bot token its messages are posted
        # with, the signing secret its requests to us carry, and where Slack's Web API is.
        "SLACK_BOT_TOKEN": env.get("SLACK_BOT_TOKEN", "").strip(),
        "SLACK_SIGNING_SECRET": env.get("SLACK_SIGNING_SECRET", "").strip(),
        "SLACK_API_URL": env.get("SLACK_API_URL", "https://slack.com/api").rstrip("/"),
        # Where a click's response_url must point for us to answer there (Slack's, unless testing).
        "SLACK_RESPONSE_URL": env.get("SLACK_RESPONSE_URL", "https://hooks.slack.com/"),
        # Waits between attempts of a failed send or webhook delivery; one more attempt than entries.
        "NOTIFY_RETRY_SECONDS": _seconds_list("NOTIFY_RETRY_SECONDS", (30, 120, 480, 1920, 7680)),
        # Retention (retention.py; 0 keeps forever): hook and apply output of releases finished
        # this many days ago, and the logs of sent mail, webhook deliveries and spent email links.
        "OUTPUT_RETENTION_DAYS": _int("OUTPUT_RETENTION_DAYS", 90),
        "NOTIFY_RETENTION_DAYS": _int("NOTIFY_RETENTION_DAYS", 30),
        # How long Redis keeps an RQ job and its result after it ran; after it failed.
        "RQ_RESULT_TTL_SECONDS": _int("RQ_RESULT_TTL_SECONDS", 3600),
        "RQ_FAILURE_TTL_SECONDS": _int("RQ_FAILURE_TTL_SECONDS", 7 * 24 * 3600),
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "WTF_CSRF_CHECK_DEFAULT": False,
        "WTF_CSRF_TIME_LIMIT": None,
        "MAX_CONTENT_LENGTH": 16 * 1024 * 1024,
        # Sign-in attempts per client address and per username (Flask-Limiter, stored in Redis).
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
        "RATELIMIT_KEY_PREFIX": "releasegate-limits",
        "LOGIN_LIMIT_PER_ADDRESS": env.get("LOGIN_LIMIT_PER_ADDRESS", "20 per minute"),
        "LOGIN_LIMIT_PER_USERNAME": env.get("LOGIN_LIMIT_PER_USERNAME", "5 per minute"),
        # Behind a reverse proxy: how many proxies set X-Forwarded-For/-Proto/-Host.
        "TRUSTED_PROXIES": _int("TRUSTED_PROXIES", 0),
        # The bearer token Prometheus sends to GET /metrics; unset, /metrics answers 404 (docs/operations.md).
        "METRICS_TOKEN": _token("METRICS_TOKEN"),
        # SQLite: how long a write waits for another writer before answering 503 (the API) or
        # retrying (the worker).
        "SQLITE_BUSY_SECONDS": _int("SQLITE_BUSY_SECONDS", 30),
        # How long a worker keeps retrying its bookkeeping (a hook's result, a heartbeat) while
        # the database is unreachable; the hook itself never runs again.
        "BOOKKEEPING_RETRY_SECONDS": _int("BOOKKEEPING_RETRY_SECONDS", 300),
        "SQLALCHEMY_ENGINE_OPTIONS": _engine_options(database_url),
    }
