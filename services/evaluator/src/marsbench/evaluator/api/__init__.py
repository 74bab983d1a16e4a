"""HTTP layer of the evaluator."""
