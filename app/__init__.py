"""Command line (``sound-of-story``) and the offline demo."""
