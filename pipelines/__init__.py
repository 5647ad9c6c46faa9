"""SoSgenPipeline, SoSgenControlNetPipeline and the spectrogram converter (not built yet: see the README)."""
