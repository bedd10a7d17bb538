"""The Alembic migrations build exactly the models' schema, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from idp import create_app
from idp.extensions import db
from tests.conftest import base_config, temporary_postgres_database

MIGRATIONS = os.path.join(os.path.dirname(__file__), "..", "..", "idp", "migrations")


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database_url(request, tmp_path):
    """A database with no table at all, on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/migrations.sqlite3"
        return
    with temporary_postgres_database(f"idp_mig_{uuid.uuid4().hex[:10]}") as url:
        yield url


def _diff(app):
    with db.engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), db.metadata)


def test_upgrade_builds_the_schema_of_the_models_and_downgrade_removes_it(empty_database_url, clock):
    app = create_app(base_config(clock, None, database_url=empty_database_url, redis_url="memory://"))
    with app.app_context():
        upgrade(directory=MIGRATIONS)
        tables = set(inspect(db.engine).get_table_names())
        assert {t.name for t in db.metadata.sorted_tables} <= tables
        assert _diff(app) == []

        downgrade(directory=MIGRATIONS, revision="base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}

        upgrade(directory=MIGRATIONS)
        assert _diff(app) == []
        db.engine.dispose()


INT4_MAX = 2_147_483_647
GROWING = ("audit_events", "oidc_refresh_tokens", "trusted_browsers")


def _sequence(table: str) -> str:
    from sqlalchemy import text

    return str(db.session.execute(text(f"SELECT pg_get_serial_sequence('{table}', 'id')")).scalar())


def test_the_migrated_growing_tables_number_rows_past_the_int4_maximum(clock):
    """One row per audit event and per refresh-token rotation: at national rates an int4 key (column or
    sequence) runs out within months. After the migrations both go on past 2 147 483 647."""
    from sqlalchemy import text

    from idp import audit

    with temporary_postgres_database(f"idp_mig_{uuid.uuid4().hex[:10]}") as url:
        app = create_app(base_config(clock, None, database_url=url, redis_url="memory://"))
        with app.app_context():
            upgrade(directory=MIGRATIONS)
            for table in GROWING:
                assert db.session.execute(text("SELECT data_type FROM information_schema.columns WHERE "
                                               "table_name = :t AND column_name = 'id'"), {"t": table}).scalar() \
                    == "bigint"
                db.session.execute(text("SELECT setval(:s, :v)"), {"s": _sequence(table), "v": INT4_MAX})
            db.session.commit()
            audit.record("test.growing_id")
            db.session.commit()
            assert db.session.execute(text("SELECT max(id) FROM audit_events")).scalar() == INT4_MAX + 1
            assert db.session.execute(text("SELECT nextval(:s)"), {"s": _sequence("oidc_refresh_tokens")}).scalar() \
                == INT4_MAX + 1
            db.session.rollback()
            db.engine.dispose()


def test_the_growing_ids_migration_copes_with_a_default_that_owns_no_sequence(clock):
    """A restore can leave an id's default without its owned sequence (pg_get_serial_sequence is NULL): the
    column is still retyped, the migration does not fail."""
    from sqlalchemy import text

    with temporary_postgres_database(f"idp_mig_{uuid.uuid4().hex[:10]}") as url:
        app = create_app(base_config(clock, None, database_url=url, redis_url="memory://"))
        with app.app_context():
            upgrade(directory=MIGRATIONS, revision="0005")
            db.session.execute(text("ALTER SEQUENCE trusted_browsers_id_seq OWNED BY NONE"))
            db.session.commit()
            upgrade(directory=MIGRATIONS)
            assert db.session.execute(text("SELECT data_type FROM information_schema.columns WHERE "
                                           "table_name = 'trusted_browsers' AND column_name = 'id'")).scalar() \
                == "bigint"
            db.session.rollback()
            db.engine.dispose()


def test_refresh_tokens_rotate_past_the_int4_maximum(pg_app):
    """The rotation (claim-and-insert, RETURNING id) works with row ids beyond int4."""
    from sqlalchemy import text

    from tests.oidc.conftest import flow, login, make_person, make_rp, redeem, token_request

    person, rp = make_person(pg_app), make_rp(pg_app)
    with pg_app.app_context():
        db.session.execute(text("SELECT setval(:s, :v)"), {"s": _sequence("oidc_refresh_tokens"), "v": INT4_MAX})
        db.session.commit()
    client = pg_app.test_client()
    f = flow(rp, scope="openid email")
    issued = redeem(client, rp, login(pg_app, client, person, f)["code"], f).json
    rotated = token_request(client, rp, {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]})
    assert rotated.status_code == 200, rotated.json
    replayed = token_request(client, rp, {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]})
    assert replayed.status_code == 400 and replayed.json["error"] == "invalid_grant"
    with pg_app.app_context():
        ids = list(db.session.execute(text("SELECT id FROM oidc_refresh_tokens ORDER BY id")).scalars())
    assert ids == [INT4_MAX + 1, INT4_MAX + 2]


@pytest.mark.postgres
def test_the_expires_at_index_left_invalid_by_a_cancelled_concurrent_build_is_rebuilt(clock):
    """Migration 0008 builds its index CONCURRENTLY; a build cancelled (here by a statement timeout while an old
    snapshot holds it back) leaves an INVALID index of that name, which IF NOT EXISTS alone would keep for
    ever (the purge then reads the whole table). The migration drops it and builds a valid one."""
    from sqlalchemy import create_engine, text

    valid_sql = text("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                     "WHERE c.relname = 'ix_oidc_refresh_tokens_expires_at'")
    with temporary_postgres_database(f"idp_mig_{uuid.uuid4().hex[:10]}") as url:
        app = create_app(base_config(clock, None, database_url=url, redis_url="memory://"))
        with app.app_context():
            upgrade(directory=MIGRATIONS, revision="0007")
            db.engine.dispose()
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as blocker, engine.connect() as builder:
            blocker.exec_driver_sql("BEGIN ISOLATION LEVEL REPEATABLE READ")
            blocker.exec_driver_sql("SELECT count(*) FROM accounts")  # an old snapshot: the build waits for it
            builder.exec_driver_sql("SET statement_timeout = '1s'")
            with pytest.raises(Exception, match="statement timeout"):
                builder.exec_driver_sql("CREATE INDEX CONCURRENTLY ix_oidc_refresh_tokens_expires_at "
                                        "ON oidc_refresh_tokens (expires_at)")
            blocker.exec_driver_sql("ROLLBACK")
            assert builder.execute(valid_sql).scalar() is False
        engine.dispose()
        with app.app_context():
            upgrade(directory=MIGRATIONS)
            assert db.session.execute(valid_sql).scalar() is True
            assert db.session.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0008"
            db.session.rollback()
            db.engine.dispose()
