"""Whole federations on one machine, with Flower's simulation engine."""
