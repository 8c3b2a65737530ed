"""Which store the collector writes to: ``[central] store`` (docs/scale.md).

SQLite (the default) keeps everything in ``[central] database``; PostgreSQL
(``store = "postgresql"``) keeps everything in ``[central] postgresql_dsn``: the
records' store here, and the back office, registry and fleet through
:func:`central.backoffice_db.target_of`.
"""

from __future__ import annotations

from central.config import CentralConfig
from central.store import SQLiteStore, Store


def open_store(cfg: CentralConfig) -> Store:
    """Open the store ``cfg`` names; a PostgreSQL store runs its migrations first."""
    jump = cfg.collector.max_seq_jump
    if cfg.central.store == "postgresql":
        from central.store_pg import PostgresStore  # psycopg only when it is used

        dsn = cfg.central.postgresql_dsn
        assert dsn is not None  # CentralSection refuses postgresql without a dsn
        return PostgresStore(
            dsn.get_secret_value(),
            max_seq_jump=jump,
            attachment_limits=cfg.attachments.limits(),
            history=cfg.fleet.history(),
        )
    return SQLiteStore(
        cfg.central.database,
        max_seq_jump=jump,
        attachment_limits=cfg.attachments.limits(),
        history=cfg.fleet.history(),
    )
