"""The ledger: what became of every message, written to PostgreSQL from the broker, in batches."""
