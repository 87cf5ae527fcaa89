"""Management commands of the ``soniq_sync.django`` app."""
