"""Development tooling: the embedded PostgreSQL server and the demo."""
