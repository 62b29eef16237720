"""Versions from commits: Conventional Commits decide the next semantic version."""
