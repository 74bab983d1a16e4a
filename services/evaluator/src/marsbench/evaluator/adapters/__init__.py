"""Implementations of the core's ports over the other services' HTTP APIs."""

from marsbench.evaluator.adapters.http import HttpIndexingJobs, HttpQueryEncoder, upstream_error

__all__ = ["HttpIndexingJobs", "HttpQueryEncoder", "upstream_error"]
