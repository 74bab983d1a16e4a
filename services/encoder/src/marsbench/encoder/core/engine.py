"""The encoder engine: lazily loaded models, their batchers, and the embed calls.

It works without HTTP (`async with EncoderEngine(settings) as engine`), which is how tests and
in-process deployments use it; the FastAPI app is a thin layer over it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np
import torch

from marsbench.encoder.adapters import (
    EmbeddingModel,
    RuntimeOptions,
    check_model,
    expected_weight_gb,
    load_model,
    prompt_card,
)
from marsbench.encoder.adapters.base import DEFAULT_PROMPT, PromptOptions, run_precision
from marsbench.encoder.core.batcher import DeviceActivity, DynamicBatcher
from marsbench.encoder.core.decoding import FairQueue, request_pixels
from marsbench.encoder.core.images import decode_image, decode_tensor
from marsbench.encoder.core.threads import in_thread
from marsbench.encoder.errors import (
    EncoderError,
    InvalidInput,
    ModelLoadFailed,
    ModelTooLarge,
    ModelUnusable,
    UnsupportedModality,
)
from marsbench.encoder.registry import (
    ModelRoots,
    ModelSpec,
    registered_specs,
    resolve_model,
    weights_sha256,
    weights_stamp,
)
from marsbench.encoder.settings import EncoderSettings
from marsbench.schemas.common import Modality
from marsbench.schemas.models import ModelInfo
from marsbench.security import LimitExceeded, is_loopback

log = logging.getLogger(__name__)

GIB = 1024**3
DEFAULT_GPU_SHARE = 0.85


@dataclass
class ServedModel:
    """A loaded model and its batchers: one per modality and prompt options, made on first use."""

    model: EmbeddingModel
    make_batcher: Callable[[str, Callable[[list[Any]], np.ndarray], bool], DynamicBatcher[Any]]
    last_used: float
    weights: str
    weights_sha256: dict[str, str] = field(default_factory=dict)
    # Where and how it runs, for model cards and run records: 'cuda:0 (NVIDIA H100 ...)', 'bf16'.
    device: str = "cpu"
    precision: str = "fp32"
    preprocessing: str = ""
    batchers: dict[tuple[Modality, PromptOptions], DynamicBatcher[Any]] = field(default_factory=dict)

    @property
    def memory_bytes(self) -> int:
        return self.model.memory_bytes

    def batcher(self, modality: Modality, options: PromptOptions) -> DynamicBatcher[Any]:
        key = (modality, options)
        if key not in self.batchers:
            model = self.model
            if modality is Modality.TEXT:
                run: Callable[[list[Any]], np.ndarray] = partial(model.embed_texts, options=options)
            else:
                run = partial(model.embed_prepared, options=options)
            name = f"{model.spec.name}/{modality.value}"
            self.batchers[key] = self.make_batcher(name, run, not model.batch_invariant)
        return self.batchers[key]

    def queued(self) -> int:
        return sum(batcher.stats().queued_items for batcher in self.batchers.values())

    async def close(self) -> None:
        for batcher in self.batchers.values():
            await batcher.close()
        self.model.close()


class EncoderObserver(Protocol):
    """Told what the engine does, for metrics (the service installs a Prometheus one:
    marsbench.observability.EncoderMetrics)."""

    def batch_done(self, batcher: str, items: int, seconds: float) -> None: ...

    def model_loaded(self, model: str, seconds: float) -> None: ...

    def model_load_failed(self, model: str) -> None: ...

    def model_unloaded(self, model: str) -> None: ...


class NullObserver:
    """The observer of an engine nobody watches: ignores everything."""

    def batch_done(self, batcher: str, items: int, seconds: float) -> None:
        pass

    def model_loaded(self, model: str, seconds: float) -> None:
        pass

    def model_load_failed(self, model: str) -> None:
        pass

    def model_unloaded(self, model: str) -> None:
        pass


class EncoderEngine:
    def __init__(
        self, settings: EncoderSettings | None = None, *, specs: dict[str, ModelSpec] | None = None
    ) -> None:
        self.settings = settings or EncoderSettings()
        self._options = RuntimeOptions(
            device=self.settings.device,
            gpu_precision=self.settings.gpu_precision,
            cpu_precision=self.settings.cpu_precision,
            trust_checkpoints=self.settings.trust_checkpoints,
            cache_dir=self.settings.cache_dir,
        )
        self._specs = registered_specs([Path(p) for p in self.settings.registry]) if specs is None else specs
        # Paths in requests' references stay under the model roots; the registry's are not confined.
        self._roots = ModelRoots.of(
            self.settings.model_roots, open_without_roots=is_loopback(self.settings.host)
        )
        self._served: OrderedDict[str, ServedModel] = OrderedDict()
        # One load at a time: each makes room for itself before it starts, so concurrent loads cannot
        # all see the same free room and go past MARSBENCH_ENCODER_MAX_LOADED_MODELS together.
        self._load_lock = asyncio.Lock()
        # One forward at a time per device; decoding and resizing on their own threads.
        self._device_pool = ThreadPoolExecutor(1, thread_name_prefix="forward")
        self._device_activity = DeviceActivity()
        self._cpu_pool = ThreadPoolExecutor(self.settings.preprocess_workers, thread_name_prefix="preprocess")
        self._decoding = FairQueue(self._cpu_pool, self.settings.preprocess_workers)
        self.observer: EncoderObserver = NullObserver()

    async def __aenter__(self) -> EncoderEngine:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        for ref in self.settings.preload:
            await self.model(ref)

    async def stop(self) -> None:
        for name, served in self._served.items():
            await served.close()
            self.observer.model_unloaded(name)
        self._served.clear()
        # Not waiting for a forward in progress: one batch of a large model on a CPU can take minutes,
        # and a service on SIGTERM must stop in seconds (its caller's job resumes; issue 17, item 9).
        self._device_pool.shutdown(wait=False, cancel_futures=True)
        self._cpu_pool.shutdown(wait=True, cancel_futures=True)

    # -- models -------------------------------------------------------------------------------

    def resolve(self, ref: str) -> ModelSpec:
        return resolve_model(ref, self._specs, roots=self._roots)

    def loaded_models(self) -> list[str]:
        return list(self._served)

    def queue_depths(self) -> dict[tuple[str, str], int]:
        """Items waiting for a forward pass, per (model, modality)."""
        depths: dict[tuple[str, str], int] = {}
        for name, served in list(self._served.items()):
            for (modality, _), batcher in list(served.batchers.items()):
                key = (name, modality.value)
                depths[key] = depths.get(key, 0) + batcher.stats().queued_items
        return depths

    def missing_preloads(self) -> list[str]:
        return [ref for ref in self.settings.preload if self.resolve(ref).name not in self._served]

    def list_models(self) -> list[ModelInfo]:
        listed = {name: self._info(spec) for name, spec in self._specs.items()}
        for name, served in self._served.items():
            listed[name] = self._info(served.model.spec, served)
        return list(listed.values())

    async def describe(self, ref: str, *, load: bool = True) -> ModelInfo:
        """The model's card; `load=False` answers from the registry without loading it."""
        if not load:
            spec = self.resolve(ref)
            return self._info(spec, self._served.get(spec.name))
        served = await self.model(ref)
        return self._info(served.model.spec, served)

    async def model(self, ref: str) -> ServedModel:
        """The served model for `ref`, loading it (once, off the event loop) if needed."""
        spec = self.resolve(ref)
        served = self._served.get(spec.name)
        if served is None:
            async with self._load_lock:
                served = self._served.get(spec.name)
                if served is None:
                    served = await self._load(spec)
        self._served.move_to_end(spec.name)
        served.last_used = time.monotonic()
        return served

    async def _load(self, spec: ModelSpec) -> ServedModel:
        budget = self.memory_budget_bytes()
        expected = expected_weight_gb(spec, self._options.torch_device().type)
        estimate = int(expected * GIB) if expected else 0
        self._check_fits(spec.name, estimate, budget)
        # What can be known to fail is checked before anything is unloaded for it: a bad checkpoint
        # or architecture used to evict the preloaded model first (and /readyz went 503).
        await self._loading(spec, check_model, spec, self._options)
        # Make room first: on a GPU the new model must not be loaded beside the ones it replaces.
        await self._evict_for_room(estimate, budget)
        log.info("loading model %s", spec.name)
        started = time.perf_counter()
        weights = weights_stamp(spec)  # taken before loading: describes what is about to be read
        model = await self._loading(spec, load_model, spec, self._options)
        try:
            self._check_fits(spec.name, model.memory_bytes, budget)
        except ModelTooLarge:
            model.close()
            self.observer.model_load_failed(spec.name)
            raise
        if spec.dimension is not None and spec.dimension != model.dimension:
            log.warning("model %s: registry says dimension %d, loaded model gives %d", spec.name,
                        spec.dimension, model.dimension)  # fmt: skip
        log.info(
            "loaded %s (dim %d, %.2f GiB) in %.1f s",
            spec.name,
            model.dimension,
            model.memory_bytes / GIB,
            time.perf_counter() - started,
        )
        self.observer.model_loaded(spec.name, time.perf_counter() - started)
        await self._evict_for_room(model.memory_bytes, budget)
        batch = self.settings.max_batch_size or spec.default_batch_size

        def make_batcher(
            name: str, run: Callable[[list[Any]], np.ndarray], per_request: bool
        ) -> DynamicBatcher[Any]:
            return DynamicBatcher(
                name,
                run,
                per_request=per_request,
                activity=self._device_activity,
                executor=self._device_pool,
                max_batch_size=batch,
                max_wait_s=self.settings.max_wait_ms / 1000,
                max_queued_items=self.settings.max_queued_items,
                on_batch=partial(self._batch_done, name),
            )

        # Local files only (hub models are pinned by revision); read once more, off the event loop.
        try:
            hashes = await self._loading(spec, weights_sha256, spec)
        except EncoderError:
            model.close()
            raise
        served = ServedModel(
            model=model,
            make_batcher=make_batcher,
            last_used=time.monotonic(),
            weights=weights,
            weights_sha256=hashes,
            device=self._device_name(),
            precision=self._precision(spec),
            preprocessing=self._preprocessing(model),
        )
        self._served[spec.name] = served
        return served

    async def _loading(self, spec: ModelSpec, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` off the event loop for loading `spec`, every failure an EncoderError: out of
        memory may pass (503), anything else is the model's files and will not (422)."""
        try:
            return await in_thread(None, fn, *args)
        except Exception as exc:
            self.observer.model_load_failed(spec.name)
            if isinstance(exc, EncoderError):
                raise
            if isinstance(exc, MemoryError | torch.OutOfMemoryError):
                raise ModelLoadFailed(f"out of memory loading model {spec.name!r}: {exc}") from exc
            cause = exc.__cause__ if isinstance(exc.__cause__, StopIteration) else exc
            raise ModelUnusable(f"cannot load model {spec.name!r}: {type(cause).__name__}: {exc}") from exc

    def _device_name(self) -> str:
        device = self._options.torch_device()
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
        return str(device)

    def _uses_tensor_path(self, model: EmbeddingModel) -> bool:
        return self.settings.image_preprocessing == "tensor" and model.tensor_preprocessing

    def _preprocessing(self, model: EmbeddingModel) -> str:
        return model.tensor_preprocessing_card if self._uses_tensor_path(model) else model.preprocessing

    def _precision(self, spec: ModelSpec) -> str:
        return run_precision(spec, self._options)

    def _batch_done(self, batcher: str, items: int, seconds: float) -> None:
        # Looked up per batch, not bound at batcher creation: the observer is set after the engine.
        self.observer.batch_done(batcher, items, seconds)

    def memory_budget_bytes(self) -> int | None:
        """Bytes of weights the encoder keeps loaded on its device (None: no limit)."""
        device = self._options.torch_device()
        if device.type == "cuda":
            if self.settings.gpu_memory_budget_gb is not None:
                return int(self.settings.gpu_memory_budget_gb * GIB)
            total = torch.cuda.get_device_properties(device).total_memory
            return int(total * DEFAULT_GPU_SHARE)  # the rest: activations of the batches in flight
        if self.settings.cpu_memory_budget_gb is not None:
            return int(self.settings.cpu_memory_budget_gb * GIB)
        return None

    def _check_fits(self, name: str, need: int, budget: int | None) -> None:
        if budget is not None and need > budget:
            setting = "MARSBENCH_ENCODER_" + (
                "GPU_MEMORY_BUDGET_GB"
                if self._options.torch_device().type == "cuda"
                else "CPU_MEMORY_BUDGET_GB"
            )
            raise ModelTooLarge(name, need / GIB, budget / GIB, setting)

    def loaded_bytes(self) -> int:
        return sum(served.memory_bytes for served in self._served.values())

    async def _evict_for_room(self, need: int, budget: int | None) -> None:
        """Unload least recently used idle models until one more model of `need` bytes fits both
        the model count and the memory budget."""

        def crowded() -> bool:
            over_count = len(self._served) >= self.settings.max_loaded_models
            over_memory = budget is not None and self.loaded_bytes() + need > budget
            return over_count or over_memory

        while self._served and crowded():
            idle = [name for name, served in self._served.items() if served.queued() == 0]
            if not idle:
                log.warning("model budget exceeded: every loaded model has queued work")
                return
            victim = self._served.pop(idle[0])  # least recently used first (OrderedDict order)
            log.info(
                "unloading %s to make room (%d models, budget %s bytes)", idle[0], len(self._served), budget
            )
            await victim.close()
            self.observer.model_unloaded(idle[0])

    # -- embeddings ---------------------------------------------------------------------------

    async def embed_texts(
        self, ref: str, texts: Sequence[str], options: PromptOptions = DEFAULT_PROMPT
    ) -> tuple[np.ndarray, int]:
        _require(self.resolve(ref), Modality.TEXT)
        served = await self.model(ref)
        served.model.check_options(options)
        vectors = await served.batcher(Modality.TEXT, options).submit(list(texts))
        tokens = await in_thread(self._cpu_pool, served.model.count_tokens, list(texts))
        return vectors, tokens

    async def embed_images(
        self, ref: str, images: Sequence[bytes], options: PromptOptions = DEFAULT_PROMPT
    ) -> np.ndarray:
        _require(self.resolve(ref), Modality.IMAGE)
        served = await self.model(ref)
        served.model.check_options(options)
        await self._check_request_pixels(images)
        prepare = partial(self._prepare, served.model)
        prepared = await self._decoding.map(prepare, list(enumerate(images)))
        return await served.batcher(Modality.IMAGE, options).submit(prepared)

    async def _check_request_pixels(self, images: Sequence[bytes]) -> None:
        """Refuse (413) a request whose images hold more pixels in all than one request may decode,
        from their headers, before any is decoded."""
        limit = self.settings.max_request_pixels
        total = await in_thread(None, request_pixels, list(images))
        if total > limit:
            raise LimitExceeded(
                f"{len(images)} images of {total} pixels in all in one request; send fewer or smaller "
                "images per request",
                setting="MARSBENCH_ENCODER_MAX_REQUEST_PIXELS",
                limit=limit,
            )

    def _prepare(self, model: EmbeddingModel, item: tuple[int, bytes]) -> Any:
        """One image, decoded and preprocessed (a task of the fair decoding queue)."""
        index, data = item
        limit = self.settings.max_image_pixels
        try:
            if self._uses_tensor_path(model):
                return model.preprocess_tensor(decode_tensor(data, index, max_pixels=limit))
            image = decode_image(data, index, max_pixels=limit, keep_alpha=model.keeps_alpha)
            return model.preprocess_image(image)
        except EncoderError:
            raise
        except Exception as exc:  # preprocessing a decoded image failed: name the image, never a 500
            raise InvalidInput(f"cannot preprocess image: {type(exc).__name__}: {exc}", index) from exc

    def _info(self, spec: ModelSpec, served: ServedModel | None = None) -> ModelInfo:
        return model_card(spec, served)


def model_card(spec: ModelSpec, served: ServedModel | None = None) -> ModelInfo:
    """What the encoder says about a model: the registry's facts, and once loaded, measured ones."""
    model = served.model if served else None
    memory = model.memory_bytes / GIB if model else spec.memory_gb
    return ModelInfo(
        id=spec.name,
        family=spec.family,
        modalities=sorted(spec.modalities),
        dimension=model.dimension if model else spec.dimension,
        image_size=model.image_size if model else spec.image_size,
        loaded=model is not None,
        default_batch_size=spec.default_batch_size,
        description=spec.description,
        source=f"{spec.source}:{spec.pretrained}" if spec.pretrained else spec.source,
        revision=spec.revision,
        status="loaded" if model else spec.status(),
        memory_gb=round(memory, 3) if memory is not None else None,
        prompts=model.prompts() if model else prompt_card(spec),
        prompt_names=list(model.prompt_names) if model else [],
        accepts_instruction=model.accepts_instruction if model else False,
        weights=served.weights if served else None,
        weights_sha256=served.weights_sha256 if served else None,
        device=served.device if served else None,
        precision=served.precision if served else None,
        image_backend=spec.image_backend,
        preprocessing=(served.preprocessing or None) if served else None,
        random_weights=spec.random_weights,
    )


def _require(spec: ModelSpec, modality: Modality) -> None:
    if modality not in spec.modalities:
        raise UnsupportedModality(spec.name, modality.value, sorted(m.value for m in spec.modalities))
