"""IDP_REDIS_URL alone chooses the Redis topology (DESIGN.md §6)."""

from __future__ import annotations

import pytest

from idp.errors import SettingsError
from idp.redis_store import RedisTarget, make_redis, parse_url
from idp.settings import load_settings


@pytest.mark.parametrize(("url", "expected"), [
    ("memory://", RedisTarget("memory")),
    ("redis://127.0.0.1:6379/0", RedisTarget("url")),
    ("rediss://cache.internal:6380/2", RedisTarget("url")),
    ("redis+sentinel://s1:26379,s2:26380/mymaster/3",
     RedisTarget("sentinel", (("s1", 26379), ("s2", 26380)), master="mymaster", db=3)),
    ("redis+sentinel://:pw@s1,[::1]:5000/main", RedisTarget("sentinel", (("s1", 26379), ("::1", 5000)),
                                                            password="pw", master="main")),
    ("redis+cluster://n1:7000,n2:7001", RedisTarget("cluster", (("n1", 7000), ("n2", 7001)))),
    ("redis+cluster://user:pw@n1:7000", RedisTarget("cluster", (("n1", 7000),), password="pw", username="user")),
])
def test_the_url_names_the_topology_and_its_nodes(url: str, expected: RedisTarget) -> None:
    assert parse_url(url) == expected


def test_a_sentinel_url_without_its_master_name_is_refused() -> None:
    with pytest.raises(ValueError, match="master name"):
        parse_url("redis+sentinel://s1:26379")


@pytest.mark.parametrize("url", ["redis+sentinel://s1:26379/m/0", "redis+cluster://n1:7000", "rediss://h:1/0"])
def test_every_documented_form_is_accepted_by_the_settings(url: str) -> None:
    assert load_settings({"redis_url": url}, environ={}).redis_url == url


def test_an_unknown_scheme_and_a_prefix_with_hash_tag_braces_are_refused() -> None:
    with pytest.raises(SettingsError, match="IDP_REDIS_URL"):
        load_settings({"redis_url": "memcached://h:11211"}, environ={})
    with pytest.raises(SettingsError, match="IDP_REDIS_PREFIX"):
        load_settings({"redis_prefix": "idp:{x}:"}, environ={})


def test_rediss_passes_the_ca_and_client_certificate_to_the_tls_connection(tmp_path) -> None:
    settings = load_settings({"redis_url": "rediss://127.0.0.1:6380/0", "redis_tls_ca_file": "/etc/ca.pem",
                              "redis_tls_cert_file": "/etc/c.pem", "redis_tls_key_file": "/etc/k.pem"}, environ={})
    client = make_redis(settings.redis_url, settings)
    options = client.connection_pool.connection_kwargs
    assert (options["ssl_ca_certs"], options["ssl_certfile"], options["ssl_keyfile"]) == (
        "/etc/ca.pem", "/etc/c.pem", "/etc/k.pem")


def test_a_sentinel_url_gives_a_client_of_the_named_master() -> None:
    settings = load_settings({"redis_url": "redis+sentinel://:pw@127.0.0.1:1/mymaster/2",
                              "redis_sentinel_password": "spw"}, environ={})
    client = make_redis(settings.redis_url, settings)
    pool = client.connection_pool
    assert pool.service_name == "mymaster" and pool.connection_kwargs["db"] == 2
    assert pool.connection_kwargs["password"] == "pw"
    assert pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs["password"] == "spw"
