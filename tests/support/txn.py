"""Plain transactions for unit tests of checks and policy (no session, no pymilter)."""

from __future__ import annotations

from mailpolicy import config
from mailpolicy.session import Setup
from mailpolicy.state import Connection, Transaction


def new_txn(conn: Connection | None = None, cfg: config.Config | None = None) -> Transaction:
    """A transaction on ``conn`` (a new connection by default) under ``cfg`` (defaults)."""
    conn = conn if conn is not None else Connection()
    conn.transactions += 1
    txn = Transaction(conn=conn, index=conn.transactions, setup=Setup.from_config(cfg or config.parse({})))
    conn.current = txn
    return txn
