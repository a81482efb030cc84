"""Accuracy measures for the pipeline's stages, scored against reference annotations."""
