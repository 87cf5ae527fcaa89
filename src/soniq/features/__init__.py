"""The original Soniq's ``soniq.features`` import paths, kept for users who switch.

Each module re-exports where the code lives now: ``soniq.features.dead_letter`` (see
``soniq.ops``) and ``soniq.features.scheduler`` (see ``soniq.recurring``).
"""
