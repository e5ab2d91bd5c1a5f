"""The engine process's server: ZeroMQ front, job queue, compute worker, pipeline registry.

Start it with `python -m engine serve`; clients connect through `bridge.client`.
"""
