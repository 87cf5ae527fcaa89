"""Blocking twins of ``soniq.ops`` (generated modules)."""
