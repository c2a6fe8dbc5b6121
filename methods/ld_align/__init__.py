"""LD-Align (arXiv 2404.06390): latent-distance-weighted SPIN iterations, with SPIN as the baseline."""
