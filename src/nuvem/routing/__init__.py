"""Choosing a replica for each call: least outstanding requests, bounded queues, deadlines."""
