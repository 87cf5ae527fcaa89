"""Blocking twins of ``soniq.recurring`` (generated modules)."""
