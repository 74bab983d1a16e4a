"""Encoder core: registry, model pool, batcher, image decoding. Never imports FastAPI."""
