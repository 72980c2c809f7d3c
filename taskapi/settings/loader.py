"""`load_settings`: the Settings of TASKAPI_ENV from the package's config/<env>.toml, the
environment and overrides, and a bad value's one-line message naming the variable to fix."""

from __future__ import annotations

import functools
import os
import tomllib
from collections.abc import Mapping
from typing import Any

from pydantic import AliasChoices, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, TomlConfigSettingsSource
from pydantic_settings import SettingsError as _SourceError
from pydantic_settings.sources.utils import parse_env_vars

from taskapi.settings.model import ENV_PREFIX, Settings
from taskapi.settings.values import CONFIG_DIR, PROJECT_ROOT

ENVIRONMENTS = ("development", "testing", "production")

# Variables that no longer exist: setting one stops start-up with what to do instead.
REMOVED = {
    "TASKAPI_PROXY_HOPS": "removed; list your proxies' addresses in TASKAPI_TRUSTED_PROXIES "
    "instead (e.g. 127.0.0.1 for nginx on the same host)",
    "TASKAPI_RATELIMIT_LOGIN_FAILURES": "removed (a per-username limit let anyone lock an "
    "account out); set TASKAPI_RATELIMIT_LOGIN_FAILURES_PER_ADDRESS and "
    "TASKAPI_RATELIMIT_LOGIN_FAILURES_PER_ACCOUNT instead",
    "TASKAPI_REVOCATION_FAIL_OPEN": "removed; with Redis unreachable, revocations are checked "
    "against the database instead (503 only when it cannot answer either)",
}
# Values never quoted back in an error (they may hold passwords).
_UNQUOTED = {"jwt_secret_key", "jwt_accepted_keys", "database_url", "redis_url", "smtp_url"}


class SettingsError(ValueError):
    """The configuration is unusable; the message is one line meant for an operator."""


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the Settings for TASKAPI_ENV from taskapi/config/<env>.toml, the environment and
    overrides (each overriding the one before); `environ={}` ignores the process environment."""
    environ = os.environ if environ is None else environ
    for name, advice in REMOVED.items():
        field = name.removeprefix(ENV_PREFIX).lower()
        if environ.get(name) or field in overrides:
            raise SettingsError(f"{name}: {advice}")
    env = str(overrides.pop("env", None) or environ.get("TASKAPI_ENV") or "development")
    if env not in ENVIRONMENTS:
        raise SettingsError(f"TASKAPI_ENV: must be one of {', '.join(ENVIRONMENTS)} (got {env!r})")
    toml_path = CONFIG_DIR / f"{env}.toml"
    if not toml_path.is_file():
        raise SettingsError(f"TASKAPI_ENV: {toml_path} is missing (reinstall taskapi)")
    values: dict[str, Any] = {}
    names: dict[str, str] = {}
    try:
        from_file = _by_field_name(TomlConfigSettingsSource(Settings, toml_file=toml_path)())
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{toml_path.relative_to(PROJECT_ROOT)}: {error}") from None
    try:
        from_environ = _by_field_name(_EnvironSource(Settings, environ)())
    except _SourceError as error:
        raise SettingsError(str(error).splitlines()[0]) from None
    for field, value in from_file.items():
        values[field] = value
        names[field] = f"{field} in {toml_path.relative_to(PROJECT_ROOT)}"
    for field, value in from_environ.items():
        values[field] = value
        names[field] = _variable_set(field, environ)
    values.update(overrides)
    for field in overrides:  # an override's problem is not the file's or the variable's
        names.pop(field, None)
    values["env"] = env
    return _validated(values, names)


# workaround: pydantic-settings reads only os.environ, private _load_env_vars hook (pinned by tests/test_library_defects.py::test_env_settings_source_reads_only_os_environ)
class _EnvironSource(EnvSettingsSource):
    """The library's environment source reading a given mapping instead of os.environ (there is
    no public parameter for that; DotEnvSettingsSource overrides the same method)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


@functools.cache
def _aliases() -> dict[str, str]:
    """Every alias a source may return → the field it belongs to."""
    result = {name: name for name in Settings.model_fields}
    for name, info in Settings.model_fields.items():
        if isinstance(info.validation_alias, AliasChoices):
            for choice in info.validation_alias.choices:
                result[str(choice)] = name
    return result


def _by_field_name(values: Mapping[str, Any]) -> dict[str, Any]:
    aliases = _aliases()
    return {aliases.get(key, key): value for key, value in values.items()}


def _variable(field: str) -> str:
    """The environment variable an operator sets for a field."""
    info = Settings.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, AliasChoices):
        return str(info.validation_alias.choices[1])  # the unprefixed name, e.g. DATABASE_URL
    return ENV_PREFIX + field.upper()


def _variable_set(field: str, environ: Mapping[str, str]) -> str:
    info = Settings.model_fields[field]
    if isinstance(info.validation_alias, AliasChoices):
        for choice in info.validation_alias.choices:
            if environ.get(str(choice)):
                return str(choice)
    return _variable(field)


def _validated(values: Mapping[str, Any], names: Mapping[str, str]) -> Settings:
    try:
        return Settings.model_validate(values)
    except ValidationError as error:
        raise SettingsError(_one_line(error, names)) from None


_MESSAGES = {
    "greater_than_equal": "must be {ge} or more",
    "less_than_equal": "must be {le} or less",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_parsing": "must be true or false",
    "literal_error": "must be {expected}",
    "extra_forbidden": "is not a setting",
}


def _one_line(error: ValidationError, names: Mapping[str, str]) -> str:
    """The first problem of a validation error as `VARIABLE: what is wrong (got value)`."""
    problems = error.errors(include_url=False)
    first = problems[0]
    context = {
        key: int(value) if isinstance(value, float) and value.is_integer() else value
        for key, value in (first.get("ctx") or {}).items()
    }
    if first["type"] == "value_error":
        message = str(context.get("error", first["msg"]))
    else:
        message = _MESSAGES.get(first["type"], first["msg"]).format(**context)
    if first["loc"]:
        field = str(first["loc"][0])
        if first["type"] != "value_error" and field not in _UNQUOTED:
            message += f" (got {_shown(first['input'])})"
        message = f"{names.get(field) or _variable(field)}: {message}"
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    return message


def _shown(value: Any) -> str:
    """A value as an operator typed it; quoted only where quotes show something (spaces)."""
    if isinstance(value, str) and value and value.strip() == value:
        return value
    return repr(value)
