"""Readers for the benchmark's published dataset layouts, and the synthetic data generator."""
