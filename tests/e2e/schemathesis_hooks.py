"""Loaded by schemathesis (SCHEMATHESIS_HOOKS) in test_api_contract.py's run.

- It knows no serializer for a bundle's `application/zip` body, which is bytes like any
  binary upload.
- Answers a function gives back as they came (the echo function's, and a job's result) carry
  the content type the request was sent with, YAML among them, around bytes that are no
  YAML. schemathesis 4.32.5 reads such answers for data to feed later calls and catches
  ValueError there but not yaml's own error, which ended its fuzzing and stateful phases
  early: its YAML reader here raises ValueError instead, so the answer is only skipped.
"""

from typing import Any

import schemathesis
import yaml
from schemathesis.core import media_types
from schemathesis.core.deserialization import DeserializationContext, deserialize_yaml
from schemathesis.core.transport import Response

schemathesis.serializer.alias("application/zip", "application/octet-stream")


@schemathesis.deserializer(*media_types.YAML_MEDIA_TYPES)
def _yaml_or_value_error(_context: DeserializationContext, response: Response) -> Any:
    try:
        return deserialize_yaml(response.content.decode(response.encoding or "utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ValueError(f"not YAML: {error}") from None
