"""The Redis connection: a real server from a ``redis://`` URL, or an in-process fakeredis (with Lua)
for ``memory://`` so that ``make run`` and unit tests need no server."""

from __future__ import annotations

import redis
from redis.commands.core import Script


def make_redis(url: str) -> redis.Redis:
    """Open a client for ``url``; short timeouts so that a stalled Redis fails closed quickly."""
    if url.startswith("memory://"):
        import fakeredis

        return fakeredis.FakeRedis(server=fakeredis.FakeServer())
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=1.0,
        socket_timeout=2.0,
        health_check_interval=15,
        retry_on_timeout=False,
    )


def ping(client: redis.Redis) -> bool:
    """True when Redis answers."""
    try:
        return bool(client.ping())
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        return False


def script(source: str) -> Script:
    """The Lua ``source`` registered once on the application's Redis client (cached by source text).

    ``register_script`` only hashes the text; the cache saves that work and the object on every call.
    A client replaced in the application (tests) gets its own registration."""
    from flask import current_app

    from idp.extensions import redis_client

    client = redis_client()
    cache: dict[str, Script] = current_app.extensions.setdefault("idp.redis_scripts", {})
    found = cache.get(source)
    if found is None or found.registered_client is not client:
        found = cache[source] = client.register_script(source)
    return found
