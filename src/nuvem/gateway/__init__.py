"""The HTTP front door: authentication, protocols, routing to functions."""
