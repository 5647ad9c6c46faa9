"""Audio primitives every part may import: one layout, ``(channels, samples)`` float32, and one resampler."""
