"""LAB (arXiv 2403.01081): a taxonomy, InstructLab's own SDG pipelines on a served teacher, phased training."""
