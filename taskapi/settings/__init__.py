"""The public face of the settings: what the rest of taskapi imports (`from taskapi.settings
import ...`). One Settings object, read once at start-up from the package's config/<env>.toml
and the environment; a bad value is a `SettingsError` whose one line names the variable to fix,
so no entry point starts serving on it.

Inside: values.py (the kinds of value and their parsers), model.py (the fields and the checks
across them), loader.py (the file, the environment and the one-line messages); the production
secret policy is taskapi/secret_policy.py.
"""

from taskapi.settings.loader import SettingsError, load_settings
from taskapi.settings.model import Settings
from taskapi.settings.values import (
    CONFIG_DIR,
    PROJECT_ROOT,
    Network,
    RateLimitSpec,
    parse_rate_limits,
)

__all__ = [
    "CONFIG_DIR",
    "PROJECT_ROOT",
    "Network",
    "RateLimitSpec",
    "Settings",
    "SettingsError",
    "load_settings",
    "parse_rate_limits",
]
