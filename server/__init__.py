"""Flower ServerApp: the thin coordinator side of the federation."""
