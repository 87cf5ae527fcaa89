"""Operations on stored jobs: the dead-letter queue, its export files, listing
filters, and retention (the prune rules and the workers' sweep)."""
