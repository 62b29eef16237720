"""nuvem: a self-hosted serverless platform for AI.

The package root exports only the handler contract, so user code in any function
environment can `from nuvem import Request, Response` without the platform's dependencies.
"""

from nuvem.handler import BodyError, Headers, HTTPError, Request, Response

__version__ = "0.1.0"

__all__ = ["BodyError", "HTTPError", "Headers", "Request", "Response", "__version__"]
