-- Soniq schema for SQLite, version 7: the PostgreSQL schema's migration 0012 in part.
-- A job's latest progress (JSON text) and whether someone waits for it; SQLite has no
-- NOTIFY, so waiters poll, and there is no completion in a caller's transaction (no
-- transactional enqueue either).
ALTER TABLE soniq_jobs ADD COLUMN progress TEXT;
ALTER TABLE soniq_jobs ADD COLUMN watched INTEGER NOT NULL DEFAULT 0;
ALTER TABLE soniq_dead_letter_jobs ADD COLUMN progress TEXT;
ALTER TABLE soniq_dead_letter_jobs ADD COLUMN watched INTEGER NOT NULL DEFAULT 0;
