-- Soniq's SQLite schema, version 2: the twin of PostgreSQL's 0004_dead_letter_started_at.

-- When the last attempt of a dead-lettered job started (Unix seconds); NULL for rows
-- dead-lettered before this migration and for imports of older export files.
ALTER TABLE soniq_dead_letter_jobs ADD COLUMN started_at REAL;
