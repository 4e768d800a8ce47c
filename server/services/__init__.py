"""The server's rules, one module per area: called by server/http/, calling server/store/.

The transaction rule, for the whole server: a service function that a
handler calls takes the pool and runs in one transaction that it opens and
owns (``transaction(pool)``), so a refused request leaves nothing
half-written. Functions that run inside another's transaction take its
connection instead (Synapse's ``_txn`` helpers), and so does every function
of server/store/. Handlers never open a transaction and import nothing from
server/store/: they parse, authenticate, call one service and shape the
reply. Where a write must outlive a refusal it is its own transaction, said
where it happens: a login spends its challenge first (services/auth.py), a
rate-limit hit is counted on its own (services/ratelimit.py). Reads that
need no transaction run as single statements on the pool: finding a
message's sender (services/messages.py) and the realtime hub's reads
(server/realtime/hub.py).

``Pool`` is the one database type handlers hold: they pass it on.
"""

from server.store.db import Pool

__all__ = ["Pool"]
