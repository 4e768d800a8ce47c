"""No transaction stays open across anything but database work (issue 12).

A transaction that awaits something else (the signature helper, a socket,
the mail server, a sleep) keeps its row locks while the event loop serves
other requests, and every other instance's writer to those rows waits.
This reads every module of server/ and checks the rule where a connection
is held: inside ``async with transaction(...) as conn`` and ``async with
pool.acquire() as conn``, and in every function given a connection (the
store's and services' ``conn`` helpers), each await must be given that
connection (``conn.fetch(...)``, ``store.lock_group(conn, ...)``).
docs/ARCHITECTURE.md ("Transactions and locks") lists what each holds.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SERVER = Path(__file__).resolve().parents[2] / "server"
# What a database connection is annotated as (a module's own `Connection` may be another
# kind: server/cli.py's is a multiprocessing pipe).
DATABASE_MODULES = {"server.store.db": {"Connection", "Executor"}, "asyncpg": {"Connection"}}
HOLDERS = ("transaction(", ".acquire(")

# Where a held connection may wait on something else, and why that holds no lock.
ALLOWED = {
    # The hub's LISTEN connection: outside any transaction, it waits for notifications.
    ("realtime/hub.py", "_watch"),
}


@dataclass(frozen=True)
class Finding:
    where: str
    function: str
    awaited: str

    def __str__(self) -> str:
        return f"{self.where} in {self.function}: awaits {self.awaited} with a connection held"


def findings(source: str, name: str) -> list[Finding]:
    """Every await in ``source`` that is not given the connection held around it."""
    found = []
    tree = ast.parse(source)
    types = _connection_types(tree)
    for function in ast.walk(tree):
        if not isinstance(function, ast.AsyncFunctionDef):
            continue
        for body, connection in _held(function, types):
            for statement in body:
                for node in ast.walk(statement):
                    if isinstance(node, (ast.Await, ast.AsyncWith, ast.AsyncFor)) and not _given(
                        node, connection
                    ):
                        where = f"{name}:{node.lineno}"
                        found.append(Finding(where, function.name, _shown(node)))
    return found


def _connection_types(tree: ast.Module) -> set[str]:
    """The annotations that name a database connection in this module."""
    types = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in DATABASE_MODULES:
            wanted = DATABASE_MODULES[node.module]
            types |= {alias.asname or alias.name for alias in node.names if alias.name in wanted}
        elif isinstance(node, ast.Import) and any(a.name == "asyncpg" for a in node.names):
            types.add("asyncpg.Connection")
    return types


def _held(function: ast.AsyncFunctionDef, types: set[str]) -> list[tuple[list[ast.stmt], str]]:
    """The code that runs with a connection held, and the connection's name."""
    regions = []
    arguments = function.args.posonlyargs + function.args.args + function.args.kwonlyargs
    for argument in arguments:
        annotation = ast.unparse(argument.annotation) if argument.annotation else ""
        if argument.arg == "conn" or annotation in types:
            regions.append((function.body, argument.arg))
    for node in ast.walk(function):
        if isinstance(node, ast.AsyncWith):
            for item in node.items:
                held = any(h in ast.unparse(item.context_expr) for h in HOLDERS)
                if held and isinstance(item.optional_vars, ast.Name):
                    regions.append((node.body, item.optional_vars.id))
    return regions


def _given(node: ast.AST, connection: str) -> bool:
    target = node.value if isinstance(node, ast.Await) else node
    return any(isinstance(n, ast.Name) and n.id == connection for n in ast.walk(target))


def _shown(node: ast.AST) -> str:
    target = node.value if isinstance(node, ast.Await) else node
    return ast.unparse(target).split("\n", 1)[0][:80]


def test_no_held_connection_awaits_anything_but_the_database() -> None:
    problems = []
    for path in sorted(SERVER.rglob("*.py")):
        name = str(path.relative_to(SERVER))
        problems += [
            str(f) for f in findings(path.read_text(), name) if (name, f.function) not in ALLOWED
        ]
    assert not problems, "\n".join(problems)


def test_the_check_finds_a_transaction_that_waits_on_something_else() -> None:
    # The kinds of wait the rule is about; each is inside a held connection.
    source = """
from server.store.db import Executor

async def sign_and_store(pool, verifier, ws):
    async with transaction(pool) as conn:
        await store.lock_group(conn, b"g")
        await verifier.verify([])
        await ws.send_str("x")
    async with pool.acquire() as conn:
        await asyncio.sleep(1)

async def helper(db: Executor, mailer):
    await db.execute("SELECT 1")
    async with mailer.session():
        pass
"""
    awaited = [f.awaited for f in findings(source, "example.py")]
    assert awaited == [
        "verifier.verify([])",
        "ws.send_str('x')",
        "asyncio.sleep(1)",
        "async with mailer.session():",
    ]
