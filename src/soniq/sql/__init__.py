"""The SQL files: named queries and numbered migrations (read by ``soniq.storage.queries``)."""
