"""The process's open-file limit: every client connection is a file descriptor (two, counting the
Redis and PostgreSQL connections a request uses), and a soft limit of 1,024 (systemd's and many
shells' default) stops accepting well before the connection counts production sees."""

from __future__ import annotations

import resource


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (which an unprivileged process may do);
    the soft limit in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == hard:
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard
