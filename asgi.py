"""hypercorn's entry point in a checkout: `hypercorn --config taskapi/config/hypercorn.toml
asgi:app` (an installed package: `taskapi.asgi:app`)."""

from taskapi.asgi import app

__all__ = ["app"]
