"""The handler that serves a function's `model:`: built-in classifiers and model files.

One replica loads the model once (`setup`), then `predict(batch)` runs the calls the worker
grouped: every request's rows are stacked into one tensor batch, run once, and split back.
A request the model cannot read answers 400 on its own; the others in its batch still run.

torch is imported only for a model that runs on it: an ONNX model whose export is cached
starts without it (~2.7 s of CPU here). The warm pool imports it ahead for the others
(runtime/model_env.py `preloads`).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nuvem.errors import BadRequest, ModelError
from nuvem.handler import Request, Response
from nuvem.models import (
    architectures,
    core_share,
    engine,
    inputs,
    labels,
    onnx_export,
    preprocess,
)
from nuvem.models.inputs import Ask
from nuvem.runtime import tensors
from nuvem.runtime.model_env import MODEL_ENV
from nuvem.stack.model import ModelSpec, TensorSpec
from nuvem.startup_marks import mark

INFER_PATH = "/v2/infer"
METADATA_PATH = "/v2/metadata"


def _error(status: int, message: str) -> Response:
    return Response(status, {"error": message})


class ModelHandler:
    def setup(self) -> None:
        # The gateway hands the model to its replicas in this variable (runtime/model_env.py).
        raw = os.environ.get(MODEL_ENV)
        if not raw:
            raise ModelError(f"{MODEL_ENV} is not set", "declare `model:` on the function")
        config = json.loads(raw)
        self.spec = ModelSpec.model_validate(config["model"])
        cache = Path(config["cache"]) if config.get("cache") else None
        self.threads = int(config.get("threads") or 1)
        # Threads that follow the node's load (model_env.py): all cores while this replica is
        # the node's only busy one, an equal share otherwise. None: `threads`, fixed.
        cores = config.get("cores")
        self.share = (
            core_share.node_share(cache, int(cores)) if cores and cache is not None else None
        )
        mark("model: configured")
        self.engine = self._load(cache)
        mark("model: engine built")
        self.takes_images = self.spec.arch is not None
        self.labels = self._labels()
        self.torchserve_labels = (
            labels.imagenet_labels(underscores=True)
            if self.spec.arch is not None and self.spec.labels is None
            else self.labels
        )
        self._warm_up()
        mark("model: warmed up")

    def _load(self, cache: Path | None) -> engine.Engine:
        spec = self.spec
        if spec.resolved_engine() == "onnxruntime":
            if spec.arch is None:
                assert spec.path is not None
                return engine.OnnxEngine(Path(spec.path), self.threads, self._also(), cache)
            assert spec.weights is not None
            exported = onnx_export.cached_onnx(spec.arch, self._weights(spec.weights, cache), cache)
            mark("model: onnx file ready")
            return engine.OnnxEngine(exported, self.threads, self._also(), cache)
        import torch

        from nuvem.models import weights
        from nuvem.models.torch_engine import TorchEngine

        torch.set_num_threads(self.threads)
        if spec.arch is not None:
            assert spec.weights is not None
            path = self._weights(spec.weights, cache)
            # Built on the CPU, then the file's tensors replace its random parameters. Not on
            # the meta device: initialising there imports torch's reference implementations
            # (about 1.1 s of CPU here), ten times what ResNet-18's random initialisation costs.
            model = weights.load_weights(architectures.build(spec.arch), path, assign=True)
            mark("model: weights loaded")
            return TorchEngine(
                model,
                [TensorSpec(name=onnx_export.INPUT, datatype="FP32", shape=(-1, 3, 224, 224))],
                [TensorSpec(name=onnx_export.OUTPUT, datatype="FP32", shape=(-1, 1000))],
                channels_last=True,
            )
        assert spec.path is not None
        if spec.model_format() == "exported":
            try:
                program = torch.export.load(spec.path)
            except (RuntimeError, ValueError, OSError) as exc:
                raise ModelError(
                    f"cannot load torch.export model {spec.path}: {exc}",
                    "save it with torch.export.save(torch.export.export(model, args), path)",
                ) from exc
            return TorchEngine(
                program.module(), spec.inputs, spec.outputs, platform="pytorch_export"
            )
        try:
            module = torch.jit.load(spec.path, map_location="cpu")  # type: ignore[no-untyped-call]
        except (RuntimeError, ValueError) as exc:
            raise ModelError(
                f"cannot load TorchScript model {spec.path}: {exc}",
                "save it with torch.jit.save(torch.jit.script(model), path)",
            ) from exc
        return TorchEngine(module, spec.inputs, spec.outputs)

    def _also(self) -> tuple[int, ...]:
        """Thread counts besides `threads` that calls may run on when they follow the node's
        load: one (every replica busy) and every core (this one alone)."""
        return () if self.share is None else (1, self.share.cores)

    def _weights(self, source: str, cache: Path | None) -> Path:
        if not self.spec.is_url():
            return Path(source)
        if cache is None:
            raise ModelError("no cache folder for downloaded weights", "run it under `nuvem up`")
        from nuvem.models import weights  # torch, and httpx to download

        name = source.rsplit("/", 1)[-1]
        # Replicas starting together download once: the others wait, then find the file.
        with onnx_export.file_lock(cache / f".{name}.lock"):
            return weights.fetch(source, cache, sha256=self.spec.sha256)

    def _labels(self) -> tuple[str, ...] | None:
        if self.spec.labels is not None:
            return labels.read_labels(self.spec.labels)
        return labels.imagenet_labels() if self.spec.arch is not None else None

    def _warm_up(self) -> None:
        """One forward pass now, so the first call is not the one paying for lazy setup, and a
        model that cannot run fails the deploy instead of the calls."""
        feed = {}
        for spec in self.engine.inputs:
            shape = tuple(1 if d == -1 else d for d in spec.shape)
            dtype = engine.NUMPY_TYPES.get(spec.datatype)
            if dtype is None:
                return
            feed[spec.name] = np.zeros(shape, dtype=dtype)
        for threads in sorted({self.threads, *self._also()}):
            self.engine.run(feed, threads)

    # -- serving -------------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        return {
            "platform": self.engine.platform,
            "inputs": [spec.model_dump(mode="json") for spec in self.engine.inputs],
            "outputs": [spec.model_dump(mode="json") for spec in self.engine.outputs],
        }

    def predict(self, batch: list[Request]) -> list[Any]:
        if self.share is None:
            return self._predict(batch, self.threads)
        # Busy for the whole batch, decoding too: that is when the other replicas' forward
        # passes must leave this one its core.
        with self.share.busy() as threads:
            return self._predict(batch, threads)

    def _predict(self, batch: list[Request], threads: int) -> list[Any]:
        results: list[Any] = [None] * len(batch)
        groups: dict[tuple[Any, ...], list[tuple[int, Ask]]] = defaultdict(list)
        for index, request in enumerate(batch):
            try:
                ask = self._read(request)
            except BadRequest as exc:
                results[index] = _error(400, str(exc))
                continue
            if ask is None:
                results[index] = self.metadata()
                continue
            # Rows stack only with rows of the same trailing shapes and types.
            signature = tuple(
                (name, array.dtype.str, array.shape[1:]) for name, array in sorted(ask.feed.items())
            )
            groups[signature].append((index, ask))
        for members in groups.values():
            self._run(members, results, threads)
        return results

    def _read(self, request: Request) -> Ask | None:
        if request.path == METADATA_PATH:
            return None
        if request.path == INFER_PATH:
            return inputs.read_tensors(request, self.engine.inputs, self.takes_images)
        if not self.takes_images:
            raise BadRequest(
                f"model {self.spec.name or 'this model'} takes tensors, not images",
                "call POST /v2/models/{name}/infer with its inputs",
            )
        return inputs.read_image(request)

    def _run(self, members: list[tuple[int, Ask]], results: list[Any], threads: int) -> None:
        asks = [ask for _, ask in members]
        if len(asks) == 1:
            feed = asks[0].feed
        else:
            feed = {name: np.concatenate([a.feed[name] for a in asks]) for name in asks[0].feed}
        outputs = self.engine.run(feed, threads) if any(a.rows for a in asks) else {}
        start = 0
        for (index, ask), end in zip(members, np.cumsum([a.rows for a in asks]), strict=True):
            part = {name: value[start:end] for name, value in outputs.items()}
            start = int(end)
            try:
                results[index] = self._answer(ask, part)
            except BadRequest as exc:
                results[index] = _error(400, str(exc))

    def _answer(self, ask: Ask, outputs: dict[str, np.ndarray]) -> Any:
        if ask.kind == "image":
            logits = next(iter(outputs.values()))
            top = preprocess.postprocess_batch(logits, self.spec.top_k, self.torchserve_labels)
            return {p.label: p.probability for p in top[0]}
        return Response(
            200,
            tensors.encode(self._v2_outputs(ask, outputs)),
            {"content-type": tensors.CONTENT_TYPE},
        )

    def _v2_outputs(self, ask: Ask, outputs: dict[str, np.ndarray]) -> list[tensors.Tensor]:
        wanted: Sequence[dict[str, Any]] = ask.parameters.get("outputs") or [
            {"name": spec.name} for spec in self.engine.outputs
        ]
        out = []
        for request in wanted:
            name = str(request.get("name"))
            array = outputs.get(name)
            if array is None:
                known = ", ".join(spec.name for spec in self.engine.outputs)
                raise BadRequest(f"unknown output {name!r}; the model has: {known}")
            classes = int(request.get("classification") or 0)
            out.append(self._classify(name, array, classes) if classes else _tensor(name, array))
        return out

    def _classify(self, name: str, array: np.ndarray, k: int) -> tensors.Tensor:
        """The classification extension, formatted as Triton does: "score:index[:label]"."""
        if array.ndim < 1:
            raise BadRequest(f"output {name!r} is a scalar; it cannot be classified")
        rows = array.reshape(array.shape[0], -1) if array.ndim > 1 else array[np.newaxis]
        k = min(k, rows.shape[1])
        order = np.argsort(-rows, axis=1, kind="stable")[:, :k]
        strings = []
        for row, indices in zip(rows, order, strict=True):
            for index in indices.tolist():
                text = f"{float(row[index]):f}:{index}"
                if self.labels is not None and index < len(self.labels):
                    text += f":{self.labels[index]}"
                strings.append(text.encode())
        shape = (array.shape[0], k) if array.ndim > 1 else (k,)
        return tensors.Tensor(name, "BYTES", shape, tensors.join_bytes(strings))


def _tensor(name: str, array: np.ndarray) -> tensors.Tensor:
    datatype = engine.DATATYPES.get(array.dtype)
    if datatype is None:
        raise ModelError(f"output {name!r} has dtype {array.dtype}, which V2 cannot carry")
    data = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return tensors.Tensor(name, datatype, tuple(int(d) for d in array.shape), data)
