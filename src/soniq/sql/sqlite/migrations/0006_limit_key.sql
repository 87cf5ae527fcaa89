-- Soniq schema for SQLite, version 6: the PostgreSQL schema's migration 0010 in part.
-- A job keeps the limit key its task's limits render (and a dead letter the key of the
-- job it was, for a replay), so that it carries the key when copied to PostgreSQL and
-- shows it; SQLite does not enforce limits (one process
-- serves a SQLite file, and limits are fleet-wide).

ALTER TABLE soniq_jobs ADD COLUMN limit_key TEXT;
ALTER TABLE soniq_dead_letter_jobs ADD COLUMN limit_key TEXT;
