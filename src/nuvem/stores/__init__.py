"""Durable stores behind the platform's seams: records (functions, keys, events, settings)
and job queues, each with an embedded default and a fake for fast tests."""
