"""Estimator shoot-out: tabular policies on procedural graph MDPs, all in JAX."""
