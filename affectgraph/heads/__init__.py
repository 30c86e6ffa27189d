"""Trained emotion heads: small calibrated classifiers over specialist features or embeddings."""
