"""HTTP layer of the indexer."""
