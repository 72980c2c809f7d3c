"""hypercorn's entry point: `hypercorn asgi:app`."""

import sys

from taskapi.app import create_app
from taskapi.settings import SettingsError

try:
    app = create_app()
except SettingsError as error:
    sys.exit(f"taskapi: configuration error: {error}")
