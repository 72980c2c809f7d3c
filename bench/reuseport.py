"""Exec a server command with its own listening socket, bound with SO_REUSEPORT.

    python bench/reuseport.py HOST PORT -- COMMAND ARGS...   ("{fd}" in ARGS: the socket's fd)

Run once per server process: each gets its own socket on the same port, and the kernel spreads
new connections evenly over them, as nginx's upstream does over the production instances. (One
socket shared by several hypercorn workers, as `--workers N` does, lets whichever process wakes
first accept a whole burst: wrk's 64 connections were seen split 56/8.)
"""

from __future__ import annotations

import os
import socket
import sys


def main() -> None:
    host, port, separator, *command = sys.argv[1:]
    if separator != "--" or not command:
        raise SystemExit(__doc__)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, int(port)))
    fd = sock.detach()
    os.set_inheritable(fd, True)
    os.execv(command[0], [arg.replace("{fd}", str(fd)) for arg in command])


if __name__ == "__main__":
    main()
