"""Alembic, driven from our CLI and tests with the app's own settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.config import Config

from taskapi.settings import Settings

# Shipped in the package, so an installed copy migrates its database too.
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(settings: Settings | None = None, *, connection: Any = None) -> Config:
    """Alembic's configuration for these settings' database (or an open sync connection)."""
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if settings is not None:
        config.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
        config.attributes["configure_logger"] = False
    return config
