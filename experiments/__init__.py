"""Recipes: one script per protocol and dataset, chaining the library's steps (run with -m)."""
