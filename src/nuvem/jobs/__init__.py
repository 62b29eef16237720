"""Async jobs: the runner that executes them and delivers their callbacks."""
