"""A fakeredis that refuses, like a Redis Cluster, any script or MULTI whose keys span several hash slots.

The unit-test ``app`` fixture runs on it, so every unit test also proves that what it drives would run on
a cluster; :data:`SEEN` remembers which scripts ran (by SHA1), for the "every script" test.
"""

from __future__ import annotations

import hashlib
import importlib
import pkgutil
from typing import Any

import fakeredis
from redis.crc import key_slot

SEEN: set[str] = set()
_MULTI_KEYS_FROM_ALL_ARGS = {b"DEL", b"UNLINK", b"EXISTS", b"TOUCH", b"MGET"}


class CrossSlot(AssertionError):
    """Keys of one atomic operation in different hash slots (a cluster answers CROSSSLOT)."""


def check_one_slot(what: str, keys: list[Any]) -> None:
    """Fail unless every key maps to one hash slot."""
    slots = {key_slot(k if isinstance(k, bytes) else str(k).encode()) for k in keys}
    if len(slots) > 1:
        raise CrossSlot(f"{what} touches keys of {len(slots)} hash slots: {keys}")


class SlotCheckingRedis(fakeredis.FakeRedis):
    """fakeredis with the cluster's one-slot rule on EVALSHA and MULTI/EXEC."""

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:  # type: ignore[override]
        check_one_slot(f"script {sha[:8]}", list(keys_and_args[:numkeys]))
        SEEN.add(sha)
        return super().evalsha(sha, numkeys, *keys_and_args)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        if transaction:
            execute = pipe.execute

            def checked(raise_on_error: bool = True) -> Any:
                keys: list[Any] = []
                for args, _options in pipe.command_stack:
                    name = str(args[0]).upper().encode()
                    keys += list(args[1:]) if name in _MULTI_KEYS_FROM_ALL_ARGS else list(args[1:2])
                check_one_slot("MULTI", keys)
                return execute(raise_on_error)

            pipe.execute = checked
        return pipe


def all_lua_sources() -> dict[str, str]:
    """SHA1 -> "module.NAME" of every Lua script defined at module level in the ``idp`` package."""
    import idp
    import idp.cli  # the area CLIs import it first

    found: dict[str, str] = {}
    for info in pkgutil.walk_packages(idp.__path__, "idp."):
        if ".migrations" in info.name or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, str) and "redis.call(" in value:
                found[hashlib.sha1(value.encode()).hexdigest()] = f"{info.name}.{name}"
    return found
