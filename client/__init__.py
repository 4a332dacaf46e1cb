"""Flower ClientApp: the thin adapter between Flower messages and a hospital site's core."""
