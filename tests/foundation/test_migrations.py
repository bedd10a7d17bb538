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
