"""REDIS_URL's parts that still apply with Sentinel: username, password, database, TLS."""

from __future__ import annotations

from taskapi.infra.redis.sentinel import SentinelAddress


def test_the_url_gives_credentials_and_database_but_not_the_address():
    address = SentinelAddress((("10.0.0.1", 26379),), "taskapi", "rediss://app:p%40ss@x:1/3")
    assert address.credentials() == {"username": "app", "password": "p@ss", "db": 3, "ssl": True}


def test_a_url_without_them_means_database_zero_in_the_clear():
    address = SentinelAddress((("10.0.0.1", 26379),), "taskapi", "redis://unused")
    assert address.credentials() == {"username": None, "password": None, "db": 0, "ssl": False}
