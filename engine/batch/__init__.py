"""Batch asset creation: many images, one command, resumable (`python -m engine batch`)."""
