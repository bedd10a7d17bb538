"""Extensions created at module level and attached in :func:`idp.create_app` with ``init_app``,
plus accessors for the per-application services (settings, clock, Redis)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from flask import current_app
from flask_mail import Mail
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import BigInteger, Integer, MetaData
from sqlalchemy.orm import DeclarativeBase

if TYPE_CHECKING:
    import redis

    from idp.clock import Clock
    from idp.settings import Settings

# Stable constraint names so that Alembic migrations are identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


# The key of a table that grows with use (one row per audit event, refresh-token rotation, trusted browser):
# int8 on PostgreSQL, where an int4 sequence would run out within months at national scale (docs/CAPACITY.md);
# SQLite's INTEGER PRIMARY KEY is already 64-bit and must stay spelled INTEGER to number rows itself.
GROWING_ID = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base of every durable model."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()
mail = Mail()
csrf = CSRFProtect()


def settings() -> Settings:
    """The validated settings of the current application."""
    return cast("Settings", current_app.extensions["idp.settings"])


def clock() -> Clock:
    """The application's clock (see :mod:`idp.clock`)."""
    return cast("Clock", current_app.extensions["idp.clock"])


def redis_client() -> redis.Redis:
    """The application's Redis client (bytes in, bytes out)."""
    return cast("redis.Redis", current_app.extensions["idp.redis"])


def rkey(*parts: Any) -> str:
    """A Redis key under the configured prefix: ``rkey("code", tx)`` -> ``idp:code:<tx>``."""
    return settings().redis_prefix + ":".join(str(p) for p in parts)


def hashtag(value: Any) -> str:
    """``{value}``: the Redis Cluster hash tag of a key part. Keys that one script or MULTI touches together
    carry the same tag (the account, the code digest, the quota subject...), so they share one hash slot
    and the script runs unchanged on a cluster: ``rkey("fail", "pwd", hashtag(account_id))``."""
    return "{" + str(value).replace("{", "").replace("}", "") + "}"


def reads_without_transaction() -> None:
    """For a request that only reads (userinfo: client, account, registry record): its statements run in
    autocommit, which spares the BEGIN and ROLLBACK round trips and sees what each SELECT would see in a
    READ COMMITTED transaction anyway (every statement takes a fresh snapshot). Only when the session has
    not used the database yet; the connection goes back to the pool with its isolation level reset when
    the session is removed (the application context's teardown)."""
    if not db.session().in_transaction():
        db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
