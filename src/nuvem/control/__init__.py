"""The control plane: the reconcile loop and its policies."""
