"""The production layout, started for a test from the files in config/ and the package's
hypercorn.toml: single-worker hypercorn instances, an arq worker, and nginx with a self-signed
certificate, all on loopback."""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

from taskapi.settings import CONFIG_DIR, PROJECT_ROOT
from tests.services import free_port, poll, unavailable

BIN = Path(sys.executable).parent
# nginx connects to the API from this address (proxy_bind), the test's clients from 127.0.0.1:
# so the API trusts nginx alone, as a deployment trusts its proxy and not its clients.
NGINX_ADDRESS = "127.0.0.2"
SERVER_NAME = "localhost"  # nginx's TASKAPI_SERVER_NAME: it serves no other name
NGINX_VARS = (
    "TASKAPI_HTTP_PORT",
    "TASKAPI_HTTPS_PORT",
    "TASKAPI_SERVER_NAME",
    "TASKAPI_TLS_CERT",
    "TASKAPI_TLS_KEY",
    "TASKAPI_UPSTREAMS",
    "TASKAPI_MAX_BODY",
)


def production_env(database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKAPI_", "DATABASE_URL"))}
    env.update(
        TASKAPI_ENV="production",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        TASKAPI_JWT_SECRET_KEY=secrets.token_urlsafe(48),
        TASKAPI_TRUSTED_PROXIES=NGINX_ADDRESS,
        **extra,
    )
    return env


@dataclasses.dataclass
class ApiInstance:
    """One single-worker hypercorn, as taskapi@PORT.service runs it."""

    port: int
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    wrapper: tuple[str, ...] = ()  # a command that runs the server (e.g. tests.unit_filters)

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*self.wrapper, str(BIN / "hypercorn")]
                + ["--config", str(CONFIG_DIR / "hypercorn.toml")]
                + ["--bind", f"127.0.0.1:{self.port}", "asgi:app"],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        poll(self._healthy, f"hypercorn on {self.port}")

    def _healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(self.log.read_text()[-3000:])
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            connection.request("GET", "/health")
            return connection.getresponse().status == 200
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process is None:
            return 0
        self.process.send_signal(sig)
        code = self.process.wait(timeout=60)
        self.process = None
        return code


def nginx_binary() -> str:
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if binary is None:
        unavailable("the `nginx` binary is not installed (apt-get install nginx)")
    assert binary is not None
    return binary


def site_values(
    directory: Path, http_port: int, https_port: int, upstream_ports: list[int], max_body: str
) -> dict[str, str]:
    """The values of config/nginx/taskapi.conf's placeholders, with a new self-signed
    certificate for SERVER_NAME in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", f"/CN={SERVER_NAME}", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return {
        "TASKAPI_HTTP_PORT": str(http_port),
        "TASKAPI_HTTPS_PORT": str(https_port),
        "TASKAPI_SERVER_NAME": SERVER_NAME,
        "TASKAPI_TLS_CERT": str(cert),
        "TASKAPI_TLS_KEY": str(key),
        "TASKAPI_UPSTREAMS": " ".join(f"server 127.0.0.1:{p} max_fails=0;" for p in upstream_ports),
        "TASKAPI_MAX_BODY": max_body,
    }


def write_main_config(directory: Path, site: Path) -> None:
    """directory/nginx.conf: a main configuration, everything under `directory`, that
    includes the site (as /etc/nginx/nginx.conf includes conf.d/*.conf)."""
    temp = {name: directory / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    (directory / "nginx.conf").write_text(
        f"{user}worker_processes 1;\nerror_log {directory}/error.log;\n"
        f"pid {directory}/nginx.pid;\nevents {{ worker_connections 512; }}\n"
        f"http {{\n  access_log {directory}/access.log;\n"
        f"  client_body_temp_path {temp['body']};\n  proxy_temp_path {temp['proxy']};\n"
        f"  fastcgi_temp_path {temp['fastcgi']};\n  uwsgi_temp_path {temp['uwsgi']};\n"
        f"  scgi_temp_path {temp['scgi']};\n  proxy_bind {NGINX_ADDRESS};\n"
        f"  include {site};\n}}\n"
    )


@dataclasses.dataclass
class Nginx:
    directory: Path
    http_port: int
    https_port: int
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, directory: Path, upstream_ports: list[int], max_body: str) -> Nginx:
        binary = nginx_binary()
        nginx = cls(directory, free_port(), free_port())
        values = site_values(directory, nginx.http_port, nginx.https_port, upstream_ports, max_body)
        # like envsubst with a variable list: only ours are replaced, nginx's own are kept
        text = (PROJECT_ROOT / "config/nginx/taskapi.conf").read_text()
        for name in NGINX_VARS:
            text = text.replace("${" + name + "}", values[name])
        (directory / "taskapi.conf").write_text(text)
        write_main_config(directory, directory / "taskapi.conf")
        nginx.process = subprocess.Popen(
            [binary, "-p", str(directory), "-c", str(directory / "nginx.conf")]
            + ["-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

        def listening() -> bool:
            if nginx.process is not None and nginx.process.poll() is not None:
                raise RuntimeError((directory / "error.log").read_text()[-3000:])
            try:
                connection = http.client.HTTPConnection("127.0.0.1", nginx.http_port, timeout=2)
                connection.request("GET", "/", headers={"Host": SERVER_NAME})
                return connection.getresponse().status == 301
            except OSError:
                return False

        poll(listening, "nginx to listen")
        return nginx

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None


def unverified_tls() -> ssl.SSLContext:
    """TLS to nginx's self-signed certificate: not verified."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class HttpsClient:
    """Requests through nginx over TLS, one keep-alive connection to `SERVER_NAME` (sent as the
    TLS server name, SNI, and as the Host), which resolves to loopback."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.context = unverified_tls()
        self.connection: http.client.HTTPSConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        if self.connection is None:
            self.connection = http.client.HTTPSConnection(
                SERVER_NAME, self.port, context=self.context, timeout=30
            )
        sent = {"Host": SERVER_NAME, **(headers or {})}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        try:
            self.connection.request(method, path, body=data, headers=sent)
            response = self.connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()
            self.connection = None
            raise
        headers = {k.lower(): v for k, v in response.getheaders()}
        is_json = headers.get("content-type", "").startswith("application/json")
        answer = json.loads(raw) if raw and is_json else raw.decode("utf-8", "replace")
        return response.status, headers, answer
