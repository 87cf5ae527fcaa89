"""The original Soniq's ``soniq.features`` import paths, kept for users who switch.

Each module re-exports where the code lives now: ``soniq.features.dead_letter`` (see
``soniq.ops``), ``soniq.features.scheduler`` (see ``soniq.recurring``) and
``soniq.features.webhooks`` (see ``soniq.webhooks``). New code imports from those.
"""
