"""Where replicas run. Modules imported by the worker process use the standard library only."""
