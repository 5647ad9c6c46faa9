"""Background-sound recommendation from a large sound library: a FAISS index over global audio embeddings, re-ranked by the retrieval model's multi-grained similarity."""
