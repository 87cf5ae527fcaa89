"""A PostgreSQL database backend whose driver connection Soniq cannot write through."""
