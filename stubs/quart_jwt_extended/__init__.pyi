# Types for the part of quart-jwt-extended 0.1 that taskapi uses: it ships none (no py.typed,
# no stubs package). Checked against the installed library by tests/test_stubs.py (stubtest).
from collections.abc import Callable
from typing import Any, TypeVar

from quart import Quart

_DecodeKey = TypeVar("_DecodeKey", bound=Callable[[dict[str, Any], dict[str, Any]], str])

class JWTManager:
    def __init__(self, app: Quart | None = None) -> None: ...
    def decode_key_loader(self, callback: _DecodeKey) -> _DecodeKey: ...

def decode_token(
    encoded_token: str, csrf_value: str | None = None, allow_expired: bool = False
) -> dict[str, Any]: ...
