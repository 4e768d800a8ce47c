"""Every table is ready to be distributed by group (Citus): read from the migrated catalog.

Growing past one PostgreSQL means distributing the group-scoped tables by
their group, co-located with ``groups`` (deploy/citus.md). Citus enforces a
primary key, a unique constraint or a foreign key between co-located tables
only when it includes the distribution column, and refuses a NULL in it. So
each table is classified here, explicitly, and a new table fails
``test_every_table_is_classified`` until someone decides where it goes:

- ``GROUP_SCOPED``: distributed by the named column (a group id that
  references ``groups``), which must be NOT NULL and in the primary key and
  every unique index; a foreign key into another group table must carry it.
- ``NOT_GROUP_SCOPED``: a reference table (copied to every node) or a table
  that stays on the coordinator, each with its reason.
- ``DROPPED_AT_DISTRIBUTION``: the foreign keys Citus cannot keep across
  shards (into a group table, not through its group), each with what keeps
  the rule instead.

deploy/citus.md's distribution statements are checked against these lists too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from server.migrate import load_migrations
from server.store import groups, motions
from server.store.db import Connection
from tests.store.conftest import NOW, Rows

Placement = Literal["reference", "coordinator"]

CITUS_DOC = Path(__file__).resolve().parents[2] / "deploy" / "citus.md"

# table -> its distribution column (a group id referencing groups).
GROUP_SCOPED: dict[str, str] = {
    "groups": "group_id",
    "group_members": "group_id",
    "former_group_members": "group_id",
    "group_events": "group_id",
    "roster_events": "group_id",
    "epoch_secrets": "group_id",
    "messages": "group_id",
    "profiles": "group_id",
    "motions": "group_id",
    "motion_signatures": "group_id",
    # A seat is part of its council's log, written with the council's events.
    "council_seats": "council_id",
}

NOT_GROUP_SCOPED: dict[str, tuple[Placement, str]] = {
    "networks": (
        "reference",
        "one row per network, referred to by every table; its revocation head moves once "
        "per revocation",
    ),
    "statements": (
        "reference",
        "signed statements by id, referred to by group and member tables alike and joined "
        "with each roster log; written once per membership act, never per message",
    ),
    "members": (
        "reference",
        "every group table refers to its members, and each message's sender is checked "
        "against them; written on join, admission, freeze, revocation and a split's move",
    ),
    "invites": (
        "coordinator",
        "found by the code's lookup id before anyone is known; joined with no group table",
    ),
    "admissions": ("coordinator", "one certificate per member, read with that member's evidence"),
    "vouches": ("coordinator", "about one member (the subject), read with their evidence"),
    "blocks": ("coordinator", "about one member (the subject), read with their evidence"),
    "revocations": (
        "coordinator",
        "one hash chain per network, appended under the network row's lock, not per group",
    ),
    "login_challenges": ("coordinator", "a login in progress, by challenge; no group"),
    "sessions": ("coordinator", "authentication by token hash, before any group is named"),
    "rate_limits": ("coordinator", "buckets of HMACed sources; no group, no member"),
    "mail_addresses": ("coordinator", "a member's sealed address, read only by the mail worker"),
    "mail_notices": ("coordinator", "the mail worker's outbox, claimed across all members"),
    "schema_migrations": ("coordinator", "server/migrate.py's bookkeeping, under its lock"),
}

# constraint name -> why Citus can't keep it, and what keeps the rule instead.
DROPPED_AT_DISTRIBUTION: dict[str, str] = {
    "groups_parent_id_fkey": (
        "a council's parent is another group, on another shard; only written by a create "
        "event the rule book checked"
    ),
    "council_seats_group_id_fkey": (
        "the seated group lives on its own shard; a seat is only written for a group whose "
        "log holds the link (services/roster_ops.py _seats_changed)"
    ),
    "members_cell_id_fkey": (
        "reference table into a distributed one; a cell is set by founding, admission and "
        "a split, each in the transaction that writes that cell's log"
    ),
    "invites_cell_id_fkey": (
        "coordinator table into a distributed one; the inviter's cell, read from their member row"
    ),
    "admissions_cell_id_fkey": (
        "coordinator table into a distributed one; the admitting cell, read from the "
        "issuer's member row"
    ),
}


# --- the catalog --------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """A unique index (the primary key's included); columns None for an expression index."""

    name: str
    primary: bool
    columns: tuple[str, ...] | None


@dataclass(frozen=True)
class ForeignKey:
    name: str
    table: str
    columns: tuple[str, ...]
    target: str
    target_columns: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    name: str
    not_null: dict[str, bool]  # column -> NOT NULL
    keys: tuple[Key, ...]
    foreign_keys: tuple[ForeignKey, ...]


async def read_catalog(conn: Connection, schema: str = "public") -> dict[str, Table]:
    """The schema's tables, their columns, unique indexes and foreign keys, from pg_catalog."""
    tables = {
        r["oid"]: r["relname"]
        for r in await conn.fetch(
            """SELECT c.oid, c.relname FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')""",
            schema,
        )
    }
    oids = list(tables)
    names: dict[tuple[int, int], str] = {}
    not_null: dict[int, dict[str, bool]] = {oid: {} for oid in oids}
    for r in await conn.fetch(
        """SELECT attrelid, attnum, attname, attnotnull FROM pg_attribute
           WHERE attnum > 0 AND NOT attisdropped
             AND attrelid IN (SELECT oid FROM pg_class
                              WHERE oid = ANY($1::oid[]) OR oid IN (
                                  SELECT confrelid FROM pg_constraint
                                  WHERE contype = 'f' AND conrelid = ANY($1::oid[])))""",
        oids,
    ):
        names[(r["attrelid"], r["attnum"])] = r["attname"]
        if r["attrelid"] in not_null:
            not_null[r["attrelid"]][r["attname"]] = r["attnotnull"]
    keys: dict[int, list[Key]] = {oid: [] for oid in oids}
    for r in await conn.fetch(
        """SELECT i.indrelid, x.relname, i.indisprimary, i.indkey::int2[] AS columns
           FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid
           WHERE i.indisunique AND i.indrelid = ANY($1::oid[])
           ORDER BY i.indisprimary DESC, x.relname""",
        oids,
    ):
        attnums = list(r["columns"])
        columns = None if 0 in attnums else tuple(names[(r["indrelid"], n)] for n in attnums)
        keys[r["indrelid"]].append(Key(r["relname"], r["indisprimary"], columns))
    foreign: dict[int, list[ForeignKey]] = {oid: [] for oid in oids}
    for r in await conn.fetch(
        """SELECT c.conname, c.conrelid, c.confrelid, t.relname AS target, c.conkey, c.confkey
           FROM pg_constraint c JOIN pg_class t ON t.oid = c.confrelid
           WHERE c.contype = 'f' AND c.conrelid = ANY($1::oid[]) ORDER BY c.conname""",
        oids,
    ):
        foreign[r["conrelid"]].append(
            ForeignKey(
                r["conname"],
                tables[r["conrelid"]],
                tuple(names[(r["conrelid"], n)] for n in r["conkey"]),
                r["target"],
                tuple(names[(r["confrelid"], n)] for n in r["confkey"]),
            )
        )
    return {
        name: Table(name, not_null[oid], tuple(keys[oid]), tuple(foreign[oid]))
        for oid, name in tables.items()
    }


# --- the checks (each returns one line per problem; none is a pass) ---------------------------


def classification_problems(
    catalog: dict[str, Table],
    group_scoped: dict[str, str],
    not_group_scoped: dict[str, tuple[Placement, str]],
) -> list[str]:
    problems = [
        f"{name}: not classified: add it to GROUP_SCOPED (with its group column) or to "
        "NOT_GROUP_SCOPED (reference or coordinator, and why) in tests/store/test_distribution.py"
        for name in sorted(set(catalog) - set(group_scoped) - set(not_group_scoped))
    ]
    problems += [
        f"{name}: classified twice" for name in sorted(set(group_scoped) & set(not_group_scoped))
    ]
    problems += [
        f"{name}: classified but no such table"
        for name in sorted((set(group_scoped) | set(not_group_scoped)) - set(catalog))
    ]
    return problems


def key_problems(catalog: dict[str, Table], group_scoped: dict[str, str]) -> list[str]:
    """The distribution column: NOT NULL, a group reference, in the primary key and every unique index."""
    problems = []
    for name, column in sorted(group_scoped.items()):
        table = catalog.get(name)
        if table is None:
            continue
        if column not in table.not_null:
            problems.append(f"{name}: has no column {column}")
            continue
        if not table.not_null[column]:
            problems.append(f"{name}.{column}: may be NULL (a distribution column may not)")
        references_groups = name == "groups" and column == "group_id"
        references_groups |= any(
            fk.target == "groups" and fk.columns == (column,) and fk.target_columns == ("group_id",)
            for fk in table.foreign_keys
        )
        if not references_groups:
            problems.append(f"{name}.{column}: does not reference groups (group_id)")
        if not any(key.primary for key in table.keys):
            problems.append(f"{name}: has no primary key")
        for key in table.keys:
            if key.columns is None or column not in key.columns:
                kind = "primary key" if key.primary else "unique index"
                problems.append(f"{name}: {kind} {key.name} {key.columns} lacks {column}")
    return problems


def foreign_key_problems(
    catalog: dict[str, Table],
    group_scoped: dict[str, str],
    not_group_scoped: dict[str, tuple[Placement, str]],
    dropped: dict[str, str],
) -> list[str]:
    """A foreign key into a group table carries the group on both sides, or is listed as dropped.

    A group table may also refer to a reference table, never to a table kept
    on the coordinator (Citus can't check a key from a shard to it).
    """
    problems = []
    seen = set()
    for table in sorted(catalog.values(), key=lambda t: t.name):
        for fk in table.foreign_keys:
            seen.add(fk.name)
            if fk.name in dropped:
                continue
            source = group_scoped.get(fk.table)
            if fk.target in group_scoped:
                target = group_scoped[fk.target]
                if source is None:
                    problems.append(
                        f"{fk.name}: {fk.table} is not distributed by group but refers to "
                        f"{fk.target}: list it in DROPPED_AT_DISTRIBUTION, or classify {fk.table}"
                    )
                elif (
                    source not in fk.columns
                    or fk.target_columns[fk.columns.index(source)] != target
                ):
                    problems.append(
                        f"{fk.name}: {fk.table}{fk.columns} -> {fk.target}{fk.target_columns} "
                        f"does not carry {fk.table}.{source} to {fk.target}.{target}"
                    )
            elif source is not None and not_group_scoped.get(fk.target, ("",))[0] == "coordinator":
                problems.append(
                    f"{fk.name}: group table {fk.table} refers to {fk.target}, which stays "
                    "on the coordinator"
                )
    problems += [
        f"{name}: listed as dropped but no such foreign key" for name in sorted(set(dropped) - seen)
    ]
    return problems


# --- the migrated schema ---------------------------------------------------------------------


async def test_every_table_is_classified(conn: Connection) -> None:
    catalog = await read_catalog(conn)
    problems = classification_problems(catalog, GROUP_SCOPED, NOT_GROUP_SCOPED)
    assert not problems, "\n".join(problems)


async def test_every_group_scoped_table_is_keyed_by_its_group(conn: Connection) -> None:
    catalog = await read_catalog(conn)
    problems = key_problems(catalog, GROUP_SCOPED)
    assert not problems, "\n".join(problems)


async def test_foreign_keys_into_group_tables_carry_the_group(conn: Connection) -> None:
    catalog = await read_catalog(conn)
    problems = foreign_key_problems(
        catalog, GROUP_SCOPED, NOT_GROUP_SCOPED, DROPPED_AT_DISTRIBUTION
    )
    assert not problems, "\n".join(problems)


def test_citus_md_distributes_exactly_the_classified_tables() -> None:
    text = CITUS_DOC.read_text(encoding="utf-8")
    distributed = dict(re.findall(r"create_distributed_table\('(\w+)', '(\w+)'", text))
    reference = set(re.findall(r"create_reference_table\('(\w+)'\)", text))
    assert distributed == GROUP_SCOPED
    assert reference == {t for t, (where, _) in NOT_GROUP_SCOPED.items() if where == "reference"}
    for name in DROPPED_AT_DISTRIBUTION:
        assert name in text, f"deploy/citus.md does not name {name} among the dropped keys"


# --- the checks catch what they are for -------------------------------------------------------


async def test_a_table_keyed_without_its_group_is_caught(conn: Connection) -> None:
    """Tables built wrongly, in a scratch schema that the transaction's rollback removes."""
    scratch = conn.transaction()
    await scratch.start()
    try:
        await conn.execute(
            """CREATE SCHEMA scratch;
               CREATE TABLE scratch.notes (
                   note_id  bytea PRIMARY KEY,
                   group_id bytea NOT NULL REFERENCES public.groups (group_id));
               CREATE TABLE scratch.pins (
                   group_id bytea NOT NULL REFERENCES public.groups (group_id),
                   note_id  bytea NOT NULL UNIQUE,
                   pinned   bytea NULL,
                   PRIMARY KEY (group_id, note_id));
               CREATE TABLE scratch.drafts (
                   group_id bytea NULL REFERENCES public.groups (group_id),
                   body     bytea NOT NULL);
               CREATE TABLE scratch.stars (
                   group_id bytea NOT NULL REFERENCES public.groups (group_id),
                   note_id  bytea NOT NULL,
                   member   bytea NOT NULL,
                   PRIMARY KEY (group_id, note_id, member),
                   FOREIGN KEY (note_id) REFERENCES scratch.notes (note_id),
                   FOREIGN KEY (member) REFERENCES public.sessions (token_hash));
               CREATE TABLE scratch.unsorted (id bytea PRIMARY KEY)"""
        )
        catalog = await read_catalog(conn, "scratch")
        group_scoped = {
            "notes": "group_id",
            "pins": "group_id",
            "drafts": "group_id",
            "stars": "group_id",
        }
        elsewhere: dict[str, tuple[Placement, str]] = {"sessions": ("coordinator", "")}

        assert classification_problems(catalog, group_scoped, {}) == [
            "unsorted: not classified: add it to GROUP_SCOPED (with its group column) or to "
            "NOT_GROUP_SCOPED (reference or coordinator, and why) in tests/store/test_distribution.py"
        ]
        assert key_problems(catalog, group_scoped) == [
            "drafts.group_id: may be NULL (a distribution column may not)",
            "drafts: has no primary key",
            "notes: primary key notes_pkey ('note_id',) lacks group_id",
            "pins: unique index pins_note_id_key ('note_id',) lacks group_id",
        ]
        assert foreign_key_problems(catalog, group_scoped, elsewhere, {}) == [
            "stars_member_fkey: group table stars refers to sessions, which stays on the coordinator",
            "stars_note_id_fkey: stars('note_id',) -> notes('note_id',) does not carry "
            "stars.group_id to notes.group_id",
        ]
    finally:
        await scratch.rollback()


# --- 010 on a database that already holds motions ------------------------------------------


async def test_signatures_stored_before_010_take_their_motions_group(conn: Connection) -> None:
    """schema/010_distribution_keys.sql fills motion_signatures.group_id from each motion."""
    await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    for migration in load_migrations():
        if migration.version < 10:
            await conn.execute(migration.sql)
    rows = await Rows(conn).found()
    cell = await rows.group()
    opener, signer = await rows.member(cell), await rows.member(cell)
    for key in (opener, signer):
        await groups.add_group_member(conn, cell, key.member_id, NOW)
    motion = await rows.stored("motion", opener, group_id=cell)
    await motions.insert_motion(conn, motion.id, cell, "split")
    signature = await rows.stored("motion-sign", signer, group_id=cell)
    await conn.execute(
        "INSERT INTO motion_signatures (motion_id, signer, statement_id) VALUES ($1, $2, $3)",
        motion.id,
        signer.member_id,
        signature.id,
    )

    (migration,) = [m for m in load_migrations() if m.version == 10]
    await conn.execute(migration.sql)

    assert await conn.fetchval("SELECT group_id FROM motion_signatures") == cell
    (listed,) = await motions.open_motions(conn, opener.member_id)
    assert [s.body for s in listed.signatures] == [signature.body]
