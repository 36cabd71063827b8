"""The classic VAE design questions, one experiment each; see common.py and docs/."""
