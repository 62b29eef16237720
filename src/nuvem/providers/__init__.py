"""Node providers: what creates and removes the machines of a pool (Terraform modules)."""
