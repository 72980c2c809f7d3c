"""arq's entry point: `arq worker.WorkerSettings` (the jobs arrive with the jobs issue)."""

from taskapi.worker_settings import WorkerSettings

__all__ = ["WorkerSettings"]
