"""Domain errors of the encoder; `marsbench.encoder.api.errors` maps each to one HTTP status.

EncoderError
├── UnknownModel          404  the reference names no registered model and no ad hoc form
├── InvalidModelRef       422  an ad hoc reference that does not parse, or a bad checkpoint
│   ├── ModelUnusable     422  permanent: unknown architecture or tag, missing or unreadable weights,
│   │                          a checkpoint that does not fit, no weights at all; retrying cannot help
│   └── ModelPathNotAllowed 422  a path in a reference outside MARSBENCH_ENCODER_MODEL_ROOTS (the same
│                              answer whether the path exists or not)
├── UnsupportedModality   422  e.g. text asked of an image-only model
├── InvalidInput          422  an undecodable image or bad input, naming the item's index
├── ModelLoadFailed       503  transient: the hub cannot be reached, out of memory while loading
├── ForwardFailed         500  a forward pass raised (a bug or a device fault), naming the model
├── ModelTooLarge         507  the model cannot fit the encoder's memory budget
├── Overloaded            429  the model's queue is full; retry later
└── TimedOut              504  queue and forward took longer than MARSBENCH_ENCODER_REQUEST_TIMEOUT_S
"""

from __future__ import annotations


class EncoderError(Exception):
    """Base of every error the encoder reports to a caller."""


class UnknownModel(EncoderError):
    def __init__(self, ref: str, known: list[str]) -> None:
        super().__init__(
            f"unknown model {ref!r}; registered models: {', '.join(known)}; "
            "or use an ad hoc reference 'open_clip:<arch>[:<pretrained>][@<checkpoint file>]'"
        )
        self.ref = ref
        self.known = known


class InvalidModelRef(EncoderError):
    pass


class ModelUnusable(InvalidModelRef):
    """A model that cannot load and never will as named: a 4xx, so clients and jobs do not retry it
    for minutes as they do a 503."""


class ModelPathNotAllowed(InvalidModelRef):
    """A file or folder in a request's model reference outside the model roots. Raised before the
    path is touched, with one message whether it exists or not, so the answer reveals nothing."""

    def __init__(self, ref: str, path: str, roots: list[str], reason: str) -> None:
        super().__init__(f"model reference {ref!r} names {path}, {reason}")
        self.path = path
        self.roots = roots


class UnsupportedModality(EncoderError):
    def __init__(self, model: str, modality: str, supported: list[str]) -> None:
        super().__init__(f"model {model!r} does not embed {modality}; it supports: {', '.join(supported)}")


class InvalidInput(EncoderError):
    def __init__(self, message: str, index: int | None = None, param: str | None = None) -> None:
        super().__init__(message if index is None else f"input[{index}]: {message}")
        self.index = index
        self.param = param  # the request field at fault, when it is not `input`


class ModelLoadFailed(EncoderError):
    pass


class ForwardFailed(EncoderError):
    def __init__(self, model: str, items: int, exc: BaseException) -> None:
        super().__init__(f"model {model!r} failed on a batch of {items} items: {type(exc).__name__}: {exc}")


class ModelTooLarge(EncoderError):
    def __init__(self, model: str, need_gb: float, budget_gb: float, setting: str) -> None:
        super().__init__(
            f"model {model!r} needs about {need_gb:.2f} GiB but the encoder's memory budget is "
            f"{budget_gb:.2f} GiB; raise {setting} or serve it on a larger device"
        )


class Overloaded(EncoderError):
    def __init__(self, model: str, queued: int, retry_after_s: float) -> None:
        super().__init__(f"model {model!r} has {queued} items queued; retry in {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s


class TimedOut(EncoderError):
    def __init__(self, model: str, timeout_s: float) -> None:
        super().__init__(
            f"model {model!r} did not answer within {timeout_s:g} s (MARSBENCH_ENCODER_REQUEST_TIMEOUT_S); "
            "its queued items were dropped, retry later or send fewer items"
        )
        self.timeout_s = timeout_s
