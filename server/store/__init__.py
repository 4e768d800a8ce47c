"""Storage: every SQL statement the server runs, one module per table (or tightly bound tables).

Each module's docstring names the tables it owns. Functions take the
connection of a transaction that a service opened (services/__init__.py
states the rule) and return frozen dataclasses, never asyncpg records.
db.py opens the pool and the transactions. Outside this package, only the
database's administration runs SQL: the migrations (server/migrate.py) and
creating the embedded server's database (server/pg.py).
"""
