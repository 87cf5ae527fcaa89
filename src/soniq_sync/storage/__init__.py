"""Blocking storage: generated twins of ``soniq.storage``'s async modules."""
