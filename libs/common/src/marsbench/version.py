"""The marsbench release, shared by every distribution of the workspace (all are versioned together)."""

__version__ = "0.1.0"
