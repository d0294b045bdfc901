"""The Flask app factory: settings, store, clients, routes."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify

from github_app import api, openapi, schema, telemetry, webhooks
from github_app.config import Settings, load_settings
from github_app.github import GitHubClient
from github_app.jobs import JobServerClient
from github_app.logs import configure_logging
from github_app.queries import QueryService
from github_app.store import Store


def create_app(
    settings: Settings | None = None, config: Mapping[str, Any] | None = None
) -> Flask:
    """Build the app from ``settings`` (by default read from the environment).

    Raises:
        ConfigError: a required setting is missing or malformed.
        SchemaOutOfDateError: the database needs ``github-app db upgrade``.
    """
    settings = settings or load_settings()
    app = Flask(__name__)
    app.config.update(config or {})
    app.config["SETTINGS"] = settings
    configure_logging(
        settings.log_format,
        settings.log_level,
        secrets=[
            settings.github_private_key,
            settings.job_server_token,
            *settings.webhook_secrets,
            *settings.api_tokens,
        ],
    )
    # Importing the handlers registers them with the webhook router.
    import handlers  # noqa: F401

    store = Store(settings.database_url or default_database_url(app.instance_path))
    schema.check_current(store.engine)
    app.config["STORE"] = store
    app.extensions["query_service"] = QueryService(
        settings=settings,
        store=store,
        github=GitHubClient.from_settings(settings),
        job_server=JobServerClient.from_settings(settings),
    )
    telemetry.init_app(app)
    app.register_blueprint(api.bp)
    app.register_blueprint(webhooks.bp)
    _register_health(app, store)
    app.add_url_rule(
        "/api/v1/openapi.json",
        "openapi",
        lambda: jsonify(openapi.document()),
        methods=["GET"],
    )
    _register_errors(app)
    return app


def default_database_url(instance_path: str | None = None) -> str:
    """Return the URL of the SQLite file used when ``DATABASE_URL`` is unset.

    The file is ``github_app.sqlite`` in Flask's instance folder, which is
    created if missing.
    """
    folder = Path(instance_path or Flask(__name__).instance_path)
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'github_app.sqlite'}"


def _register_health(app: Flask, store: Store) -> None:
    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        return jsonify({"status": "ok"}), 200

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        try:
            store.ping()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return jsonify({"status": "unavailable", "reason": type(exc).__name__}), 503

        return jsonify({"status": "ok"}), 200


def _register_errors(app: Flask) -> None:
    from werkzeug.exceptions import HTTPException

    @app.errorhandler(HTTPException)
    def on_http_error(exc: HTTPException) -> tuple[Response, int]:
        code = (exc.name or "error").lower().replace(" ", "_")
        return api.error_response(exc.code or 500, code, exc.description or "")[0], (
            exc.code or 500
        )
