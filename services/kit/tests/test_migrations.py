"""Migrations are forward-only: applied once, in order, never edited afterwards."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from carnet_kit.db import MigrationError, create_pool, load_migrations, migrate


def _write(folder: Path, name: str, sql: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(sql)


async def test_migrations_apply_once_in_order(database_url: str, tmp_path: Path) -> None:
    schema = f"m_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "migrations"
    _write(folder, "0001_create.sql", "CREATE TABLE things (id int PRIMARY KEY);")
    _write(folder, "0002_add.sql", "ALTER TABLE things ADD COLUMN name text;")
    pool = await create_pool(database_url, schema)
    try:
        assert await migrate(pool, schema, folder) == [1, 2]
        assert await migrate(pool, schema, folder) == []
        await pool.execute("INSERT INTO things (id, name) VALUES (1, 'x')")
        _write(folder, "0003_more.sql", "ALTER TABLE things ADD COLUMN extra int;")
        assert await migrate(pool, schema, folder) == [3]
        assert await pool.fetchval("SELECT count(*) FROM things") == 1
    finally:
        await pool.close()


async def test_an_edited_migration_stops_the_start(database_url: str, tmp_path: Path) -> None:
    schema = f"m_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "migrations"
    _write(folder, "0001_create.sql", "CREATE TABLE t (id int);")
    pool = await create_pool(database_url, schema)
    try:
        await migrate(pool, schema, folder)
        _write(folder, "0001_create.sql", "CREATE TABLE t (id bigint);")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(pool, schema, folder)
    finally:
        await pool.close()


async def test_a_failing_migration_leaves_nothing_half_done(database_url: str, tmp_path: Path) -> None:
    schema = f"m_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "migrations"
    _write(folder, "0001_bad.sql", "CREATE TABLE ok (id int); SELECT * FROM no_such_table;")
    pool = await create_pool(database_url, schema)
    try:
        with pytest.raises(Exception, match="no_such_table"):
            await migrate(pool, schema, folder)
        assert await pool.fetchval("SELECT to_regclass($1)", f"{schema}.ok") is None
    finally:
        await pool.close()


def test_gaps_and_bad_names_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, "0001_a.sql", "")
    _write(tmp_path, "0003_c.sql", "")
    with pytest.raises(MigrationError, match="expected version 0002"):
        load_migrations(tmp_path)
    (tmp_path / "0003_c.sql").rename(tmp_path / "2_c.sql")
    with pytest.raises(MigrationError, match="NNNN_name"):
        load_migrations(tmp_path)
