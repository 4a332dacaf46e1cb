"""Readers for each modality and the per-run data report."""
