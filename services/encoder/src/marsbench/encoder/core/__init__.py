"""Encoder core: model pool, batcher, image decoding. Never imports FastAPI."""
