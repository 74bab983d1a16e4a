"""The vector store seam: one interface, two backends (embedded Qdrant engine, Qdrant server)."""
