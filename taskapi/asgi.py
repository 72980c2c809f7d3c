"""hypercorn's entry point: `hypercorn --config taskapi/config/hypercorn.toml taskapi.asgi:app`
(the checkout's asgi.py is the same app)."""

import sys

from taskapi.app import create_app
from taskapi.infra.heap import settle_heap
from taskapi.infra.logs import configure_process_logging
from taskapi.infra.open_files import raise_open_file_limit
from taskapi.settings import SettingsError, load_settings

try:
    settings = load_settings()
    configure_process_logging(settings.log_level, settings.log_format)
    raise_open_file_limit()  # one descriptor per client connection, and then some
    app = create_app(settings)
    settle_heap()
except SettingsError as error:
    sys.exit(f"taskapi: configuration error: {error}")
