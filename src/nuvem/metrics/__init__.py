"""Metric names, declared once, and their registry."""
