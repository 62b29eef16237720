"""The stack file (`nuvem.yaml`): models and loader."""
