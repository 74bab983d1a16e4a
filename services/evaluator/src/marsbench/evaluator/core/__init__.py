"""Evaluator core: query building, evaluation per task, run records, interactive search."""
