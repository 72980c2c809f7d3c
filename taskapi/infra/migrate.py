"""Alembic, driven from our CLI and tests with the app's own settings."""

from __future__ import annotations

from typing import Any

from alembic.config import Config

from taskapi.settings import PROJECT_ROOT, Settings

MIGRATIONS_DIR = PROJECT_ROOT / "migrations"


def alembic_config(settings: Settings | None = None, *, connection: Any = None) -> Config:
    """Alembic's configuration for these settings' database (or an open sync connection)."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if settings is not None:
        config.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
        config.attributes["configure_logger"] = False
    return config
