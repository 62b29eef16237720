"""The `nuvem` command line. The only place that configures logging."""
