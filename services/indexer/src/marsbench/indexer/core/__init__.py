"""Indexer core: jobs and the streaming pipeline. Never imports FastAPI."""
