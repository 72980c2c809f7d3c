"""arq's entry point: `arq worker.WorkerSettings --custom-log-dict worker.LOG_CONFIG` (the
option gives arq's own lines taskapi's format, TASKAPI_LOG_FORMAT)."""

import sys

from taskapi.infra.logs import configure_process_logging
from taskapi.settings import SettingsError, load_settings
from taskapi.worker_settings import ARQ_LOG_CONFIG, build_worker_settings

LOG_CONFIG = ARQ_LOG_CONFIG
try:
    settings = load_settings()
    configure_process_logging(settings.log_level, settings.log_format)
    WorkerSettings = build_worker_settings(settings)
except SettingsError as error:
    sys.exit(f"taskapi worker: configuration error: {error}")
