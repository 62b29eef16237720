"""Loaded by schemathesis (SCHEMATHESIS_HOOKS) in test_api_contract.py's run: it knows no
serializer for a bundle's `application/zip` body, which is bytes like any binary upload."""

import schemathesis

schemathesis.serializer.alias("application/zip", "application/octet-stream")
