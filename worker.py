"""arq's entry point: `arq worker.WorkerSettings`."""

import sys

from taskapi.settings import SettingsError, load_settings
from taskapi.worker_settings import build_worker_settings

try:
    WorkerSettings = build_worker_settings(load_settings())
except SettingsError as error:
    sys.exit(f"taskapi worker: configuration error: {error}")
