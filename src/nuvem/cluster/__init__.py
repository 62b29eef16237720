"""Cluster mode on Ray: the token, the head, nodes joining and leaving, and membership.

Ray does the distributed part (node membership, health checks, placement); this package
starts and stops its processes the way nuvem needs (token authentication, every port
chosen, stopped by PID) and reads the head's view of the nodes. Ray is imported lazily,
only by the functions that talk to it, so nuvem runs without it in engine `local`.
"""
