"""hypercorn's entry point: `hypercorn asgi:app`."""

import sys

from hypercorn.middleware import ProxyFixMiddleware

from taskapi.app import create_app
from taskapi.logs import configure_logging
from taskapi.settings import SettingsError, load_settings

try:
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
except SettingsError as error:
    sys.exit(f"taskapi: configuration error: {error}")

if settings.proxy_hops > 0:  # behind nginx: believe that many hops of X-Forwarded-*
    app = ProxyFixMiddleware(app, mode="legacy", trusted_hops=settings.proxy_hops)  # type: ignore[assignment]
