"""Storage: every query Soniq runs, and the only code that imports a database driver.

``backend`` (the backends: PostgreSQL here, SQLite and memory in ``local``), ``queries``
(the named SQL of ``soniq/sql/``), ``dialect`` (how each database takes parameters and
gives rows), ``store`` (the typed methods the rest of Soniq calls, by area) and
``records`` (what those methods return).
"""
