"""SoSRetrievalModel and its configuration and processor (not built yet: see the README)."""
