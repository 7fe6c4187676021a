"""Baseline embedders that run anywhere with no download (radiomics-style features, local-checkpoint CNNs)."""
