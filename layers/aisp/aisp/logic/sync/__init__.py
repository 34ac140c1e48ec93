"""Background sync of accounts without the user: the diff of a bank listing against the store, the sync run and
the change feed. Design: ``docs/sync.md``."""
