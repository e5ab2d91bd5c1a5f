"""Pipelines that compose the networks: image -> parts (PartRAG)."""
