"""Pairwise comparisons and ratings."""
