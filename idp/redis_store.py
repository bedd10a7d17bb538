"""The Redis connection, chosen by ``IDP_REDIS_URL`` alone (DESIGN.md §6):

- ``memory://``: an in-process fakeredis (with Lua) so that ``make run`` and unit tests need no server;
- ``redis://`` / ``rediss://`` (TLS, CA and client certificate from the ``redis_tls_*`` settings) / ``unix://``;
- ``redis+sentinel://[:password@]h1:26379,h2:26379/MASTER/DB``: the primary that the Sentinels name,
  found again after a failover on the next connection (no operator);
- ``redis+cluster://[:password@]h1:7000,h2:7001``: a Redis Cluster from any seed nodes.

Every Lua script and MULTI of the application touches keys of one hash slot (keys carry a ``{hash tag}``
on the account, the code or token digest, the subject of a quota: see :func:`idp.extensions.hashtag`), so
each runs unchanged on a cluster. :func:`durable` adds Redis ``WAIT`` after the security writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import redis
from redis.commands.core import Script

if TYPE_CHECKING:
    from idp.settings import Settings

# Short timeouts: a stalled Redis fails closed quickly (a 503), it never holds a worker.
_TIMEOUTS: dict[str, Any] = {"socket_connect_timeout": 1.0, "socket_timeout": 2.0}


class ReplicationNotAcknowledged(redis.exceptions.ConnectionError):
    """A security write was not acknowledged by ``redis_wait_replicas`` replicas in time: the action it
    guards must not go on (a failover now could forget it). A ConnectionError, so the request fails closed."""


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """A parsed ``IDP_REDIS_URL``: the topology, its nodes, and the options found in the URL."""

    kind: str  # memory | url | sentinel | cluster
    nodes: tuple[tuple[str, int], ...] = ()
    password: str | None = None
    username: str | None = None
    master: str = ""
    db: int = 0


def _host_port(text: str, default: int) -> tuple[str, int]:
    if text.startswith("["):  # [IPv6]:port
        host, _, rest = text[1:].partition("]")
        return host, int(rest.lstrip(":") or default)
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    return host, int(port or default)


def parse_url(url: str) -> RedisTarget:
    """Split a ``redis+sentinel://`` or ``redis+cluster://`` URL (other forms are redis-py's own)."""
    if url.startswith("memory://"):
        return RedisTarget("memory")
    scheme, sep, rest = url.partition("://")
    if scheme not in ("redis+sentinel", "redis+cluster") or not sep:
        return RedisTarget("url")
    netloc, _, path = rest.partition("/")
    auth, _, hosts = netloc.rpartition("@")
    username, _, password = auth.partition(":") if auth else ("", "", "")
    default_port = 26379 if scheme == "redis+sentinel" else 6379
    nodes = tuple(_host_port(h, default_port) for h in hosts.split(",") if h)
    if not nodes:
        raise ValueError("no host in the Redis URL")
    if scheme == "redis+cluster":
        return RedisTarget("cluster", nodes, password or None, username or None)
    master, _, db = path.strip("/").partition("/")
    if not master:
        raise ValueError("redis+sentinel:// needs the master name: redis+sentinel://h1:26379,h2:26379/MASTER/DB")
    return RedisTarget("sentinel", nodes, password or None, username or None, master, int(db or 0))


def _tls(s: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if s.redis_tls_ca_file:
        options["ssl_ca_certs"] = s.redis_tls_ca_file
    if s.redis_tls_cert_file:
        options["ssl_certfile"] = s.redis_tls_cert_file
        options["ssl_keyfile"] = s.redis_tls_key_file or None
    return options


def make_redis(url: str, s: Settings | None = None) -> redis.Redis:
    """Open a client for ``url`` (see the module docstring). A Cluster client is returned as ``redis.Redis``:
    it offers the same commands, and every key it is given is routed by its slot."""
    from idp.settings import Settings

    s = s or Settings(redis_url=url)
    target = parse_url(url)
    if target.kind == "memory":
        import fakeredis

        return fakeredis.FakeRedis(server=fakeredis.FakeServer())
    if target.kind == "sentinel":
        return _sentinel(target, s)
    if target.kind == "cluster":
        return _cluster(target, s)
    tls = _tls(s) if url.startswith("rediss://") else {}
    return redis.Redis.from_url(url, health_check_interval=15, retry_on_timeout=False, **_TIMEOUTS, **tls)


def _data_node_options(target: RedisTarget, s: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {**_TIMEOUTS, "password": target.password, "username": target.username}
    if s.redis_tls:
        options.update(ssl=True, **_tls(s))
    return options


def _sentinel(target: RedisTarget, s: Settings) -> redis.Redis:
    from redis.sentinel import Sentinel

    sentinel_options: dict[str, Any] = {**_TIMEOUTS, "password": s.redis_sentinel_password or None}
    if s.redis_sentinel_tls:
        sentinel_options.update(ssl=True, **_tls(s))
    sentinel = Sentinel(list(target.nodes), sentinel_kwargs=sentinel_options, **_data_node_options(target, s))
    # Each new connection asks the Sentinels for the current primary; a connection to a demoted primary
    # raises ConnectionError ("previous master is now a slave") and is dropped, so the next one follows.
    return sentinel.master_for(target.master, db=target.db, health_check_interval=15, retry_on_timeout=False)


def _cluster(target: RedisTarget, s: Settings) -> redis.Redis:
    from redis.cluster import ClusterNode, RedisCluster

    client = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in target.nodes],
                          **_data_node_options(target, s))
    return cast("redis.Redis", client)


def is_cluster(client: object) -> bool:
    """True for a Redis Cluster client."""
    from redis.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def ping(client: redis.Redis) -> bool:
    """True when Redis answers."""
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False


def script(source: str) -> Script:
    """The Lua ``source`` registered once on the application's Redis client (cached by source text).

    ``register_script`` only hashes the text; the cache saves that work and the object on every call.
    A client replaced in the application (tests) gets its own registration. On a cluster the script is
    run on the node of its first key (all its keys share that slot) and loaded there on first use."""
    from flask import current_app

    from idp.extensions import redis_client

    client = redis_client()
    cache: dict[str, Script] = current_app.extensions.setdefault("idp.redis_scripts", {})
    found = cache.get(source)
    if found is None or found.registered_client is not client:
        found = cache[source] = client.register_script(source)
    return found


def durable(source: str, *, keys: Sequence[str], args: Sequence[Any]) -> Any:
    """Run a security write (a failure counted, a lock, a quota unit, a code used) and, when
    ``redis_wait_replicas`` is set, wait on the same connection until that many replicas hold it.

    Sentinel promotes the replica with the most data, so an acknowledged write survives the failover of
    its primary. Not acknowledged in ``redis_wait_timeout`` ms: :class:`ReplicationNotAcknowledged` (the
    write stays on the primary: the action is refused, never let through uncounted). A primary with fewer
    replicas connected waits for those it has (see :class:`_ReplicaCount`)."""
    from idp.extensions import redis_client, settings

    s = settings()
    lua = script(source)
    client: Any = redis_client()
    if is_cluster(client):  # WAIT counts the writes of one connection: use the node that owns the slot
        client = client.get_redis_connection(client.get_node_from_key(keys[0]))
    wanted = min(s.redis_wait_replicas, _replicas.connected(client)) if s.redis_wait_replicas > 0 else 0
    if wanted <= 0:
        return lua(keys=keys, args=args)
    pipe = client.pipeline(transaction=False)
    lua(keys=keys, args=args, client=pipe)
    pipe.wait(wanted, s.redis_wait_timeout)
    reply, acknowledged = pipe.execute()
    if int(acknowledged) < wanted:
        _replicas.forget(client)
        raise ReplicationNotAcknowledged(f"{acknowledged} of {wanted} replicas acknowledged")
    return reply


class _ReplicaCount:
    """How many replicas the primary has connected now (``INFO replication``), cached one second per client.

    A write is awaited on at most that many: a primary left alone (its replica died, or was just promoted
    from a replica) has nobody to lose the write to in a failover (Sentinel can promote no one), and its
    append-only file keeps it across a restart; waiting for an absent replica would refuse every login."""

    def __init__(self) -> None:
        self._seen: dict[int, tuple[float, int]] = {}

    def connected(self, client: Any) -> int:
        import time

        now = time.monotonic()
        at, count = self._seen.get(id(client), (0.0, 0))
        if now - at > 1.0:
            count = int(client.info("replication").get("connected_slaves", 0))
            self._seen[id(client)] = (now, count)
        return count

    def forget(self, client: Any) -> None:
        self._seen.pop(id(client), None)


_replicas = _ReplicaCount()
