"""Core of the federated DP-GAN system: data readers, models, DP training, metrics, export.

Nothing in this package imports Flower, so every model and privacy claim can be tested
without a federation.
"""
