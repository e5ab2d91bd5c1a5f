"""Training: the shared loop, EMA, logs, and the per-network recipes."""
