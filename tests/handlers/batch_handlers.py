"""A user's batched handler: setup() once, predict(batch) -> list of the same length."""

from __future__ import annotations

import os
import time
from typing import Any

from nuvem import HTTPError, Request, Response


class Doubler:
    def setup(self) -> None:
        self.pid = os.getpid()

    def predict(self, batch: list[Request]) -> list[Any]:
        results: list[Any] = []
        for request in batch:
            text = request.text()
            if text.startswith("sleep:"):  # holds the batch thread: later calls queue meanwhile
                time.sleep(float(text.removeprefix("sleep:")))
                results.append({"slept": True, "batch": len(batch)})
            elif text == "forbidden":  # one call of the batch refused on purpose
                results.append(HTTPError(403, "forbidden is refused on purpose"))
            elif text == "boom":
                results.append(ValueError("boom is not a number"))
            elif not text.lstrip("-").isdigit():
                results.append(Response(400, {"error": f"{text!r} is not a number"}))
            else:
                results.append({"double": int(text) * 2, "batch": len(batch), "pid": self.pid})
        return results
