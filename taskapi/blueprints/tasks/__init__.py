"""The task resource, under /api/tasks."""
