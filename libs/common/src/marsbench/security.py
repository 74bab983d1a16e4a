"""Access and limits every service shares: the API key, the request body size, the dataset roots.

`install_security(app, settings)` is the one call a service's `create_app` makes. It refuses to
build an app that would listen beyond loopback with no API key (or, for the indexer and the
evaluator, with no dataset roots), then installs two ASGI middlewares and one error handler:

- the API key: every request but the health probes carries `Authorization: Bearer <key>`, compared
  in constant time; anything else gets a 401 in the services' error shape, with `WWW-Authenticate`.
  A service may also name static prefixes (the evaluator's search page, `/ui`): GET and HEAD under
  them need no key, because those files hold no data and a browser cannot send a header when it
  loads a page; the page sends the key on its own API calls;
- the body size: a request whose body is over the limit gets a 413 naming the setting, whether it
  declares its length or streams it (counted as it arrives, so memory stays bounded either way);
- `LimitExceeded` (raised by routes for per-item limits) becomes a 413 naming the setting.

The services cannot see the address uvicorn binds, so `MARSBENCH_HOST` says it: `marsbench serve
--host` sets it, and docker-compose.yml sets it to the address the ports are published on.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from marsbench.http import error_response

log = logging.getLogger(__name__)

# The probes answer without a key: orchestrators and load balancers hold none.
OPEN_PATHS = frozenset({"/health", "/healthz", "/readyz"})
API_KEY_ENV = "MARSBENCH_API_KEY"
MIN_KEY_LENGTH = 16
MIB = 1024 * 1024


class AccessSettings(BaseSettings):
    """Fields both the encoder's and the backend services' settings carry (explicit names, so the
    encoder's `MARSBENCH_ENCODER_` prefix does not apply to them)."""

    model_config = SettingsConfigDict(extra="ignore")

    api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(API_KEY_ENV, "api_key"),
        description="The deployment's API key: requests carry `Authorization: Bearer <key>`. Set, it is "
        "required on every endpoint but /health, /healthz, /readyz and the evaluator's static search "
        "page (/ui/; its API calls need the key); unset, the service refuses to listen "
        "beyond loopback (see MARSBENCH_REQUIRE_API_KEY).",
    )
    require_api_key: Literal["auto", "true", "false"] = Field(
        default="auto",
        validation_alias=AliasChoices("MARSBENCH_REQUIRE_API_KEY", "require_api_key"),
        description="'auto': a key is needed to listen beyond loopback (MARSBENCH_HOST); 'true': always "
        "needed; 'false': never checked, even when set (serving an open API on purpose).",
    )
    host: str = Field(
        default="127.0.0.1",
        validation_alias=AliasChoices("MARSBENCH_HOST", "host"),
        description="The address the service is reachable on (uvicorn's --host, or the address a "
        "container's port is published on); decides whether it listens beyond loopback.",
    )

    max_body_mb: float = Field(
        default=16.0, gt=0, description="Largest request body in MiB; larger ones get 413."
    )

    def key(self) -> str | None:
        """The plain key, for the clients a service calls other services with."""
        return self.api_key.get_secret_value() if self.api_key is not None else None

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Compose passes `MARSBENCH_API_KEY=` from .env as an empty string: that means "no key".
        return None if isinstance(value, str) and not value.strip() else value


def is_loopback(host: str) -> bool:
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname other than localhost: assume it is reachable from elsewhere


class StartupRefused(RuntimeError):
    """The settings would expose a service; the message says which setting to add."""


class LimitExceeded(Exception):
    """A request over a configured limit; answered 413 with the setting's name and value."""

    def __init__(self, message: str, *, setting: str, limit: int | float) -> None:
        super().__init__(f"{message} (limit {limit}, setting {setting})")
        self.setting = setting
        self.limit = limit


def required_key(settings: AccessSettings) -> str | None:
    """The key requests must carry, or None for an open service; raises StartupRefused when the
    settings would open a service to the network by accident."""
    key = settings.key()
    exposed = not is_loopback(settings.host)
    if settings.require_api_key == "false":
        if exposed:
            log.warning("MARSBENCH_REQUIRE_API_KEY=false: serving %s with no API key", settings.host)
        return None
    if key is None:
        if settings.require_api_key == "true":
            raise StartupRefused(f"MARSBENCH_REQUIRE_API_KEY=true but {API_KEY_ENV} is unset")
        if exposed:
            raise StartupRefused(
                f"listening on {settings.host} (beyond loopback) needs an API key: set {API_KEY_ENV} "
                "(e.g. `openssl rand -hex 32`), or MARSBENCH_REQUIRE_API_KEY=false to serve without one"
            )
        return None
    if len(key) < MIN_KEY_LENGTH or not key.isascii() or not key.isprintable() or " " in key:
        raise StartupRefused(f"{API_KEY_ENV} must be at least {MIN_KEY_LENGTH} printable ASCII characters")
    return key


# -- middlewares --------------------------------------------------------------------------------


def is_static_path(method: str, path: str, prefixes: Sequence[str]) -> bool:
    """A GET or HEAD of a prefix or anything below it, with no `..` segment (routing does not
    normalise paths, so such a request would reach the static files or nothing, but it is refused
    here rather than relied on)."""
    if method not in ("GET", "HEAD") or "/.." in path or "\\" in path:
        return False
    return any(path == prefix or path.startswith(f"{prefix}/") for prefix in prefixes)


class ApiKeyMiddleware:
    """401 for any request to a non-probe path without the bearer key; nothing is read first."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        key: str,
        open_paths: frozenset[str] = OPEN_PATHS,
        static_prefixes: Sequence[str] = (),
    ) -> None:
        self.app = app
        self._key = key.encode("ascii")
        self._open = open_paths
        self._static = tuple(static_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in self._open
            or is_static_path(scope["method"], scope["path"], self._static)
        ):
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization")
        scheme, _, token = (header or "").partition(" ")
        # Header values arrive latin-1 decoded: encoding back gives the bytes sent, for any input.
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode("latin-1"), self._key):
            await self.app(scope, receive, send)
            return
        problem = "missing" if header is None else "invalid"
        challenge = 'Bearer realm="marsbench"' + ("" if header is None else ', error="invalid_token"')
        response = error_response(
            PermissionError(),
            401,
            error="Unauthorized",
            message=f"{problem} API key: send 'Authorization: Bearer <key>' with this deployment's "
            f"{API_KEY_ENV}",
            headers={"WWW-Authenticate": challenge},
        )
        await response(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """413 for a body over `max_bytes`: at once when Content-Length says so, else as soon as the
    streamed bytes pass it (the app's own answer to the cut-off body is replaced by the 413)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, setting: str) -> None:
        self.app = app
        self._max = max_bytes
        self._setting = setting

    def _too_large(self, size: str) -> JSONResponse:
        exc = LimitExceeded(
            f"request body of {size} is over {self._max} bytes", setting=self._setting, limit=self._max
        )
        return limit_response(exc)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max:
            await self._too_large(f"{int(declared)} bytes")(scope, receive, send)
            return
        received = 0
        exceeded = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self._max:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # the app's answer to a body it never saw whole: the 413 goes instead
            started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._too_large("more bytes")(scope, receive, send)


def limit_response(exc: LimitExceeded) -> JSONResponse:
    return error_response(
        exc, 413, error="LimitExceeded", detail={"setting": exc.setting, "limit": exc.limit}
    )


async def _limit_exceeded(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LimitExceeded)
    return limit_response(exc)


# -- dataset roots ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DatasetRoots:
    """The folders requests may name datasets under; empty: anywhere (loopback services only)."""

    roots: tuple[Path, ...]

    @classmethod
    def of(cls, roots: Sequence[str | Path]) -> DatasetRoots:
        return cls(tuple(Path(root).expanduser().resolve() for root in roots))

    def confine(self, path: str) -> Path:
        """The resolved folder, once it lies under a root: `..` and symlinks are followed first, so
        neither can lead out of the roots. Raises PathNotAllowed naming the path and the roots."""
        resolved = Path(path).expanduser().resolve()
        if self.roots and not any(resolved.is_relative_to(root) for root in self.roots):
            raise PathNotAllowed(path, resolved, self.roots)
        return resolved


class PathNotAllowed(Exception):
    def __init__(self, path: str, resolved: Path, roots: tuple[Path, ...]) -> None:
        shown = path if str(resolved) == path else f"{path} (resolves to {resolved})"
        super().__init__(
            f"dataset folder {shown} is outside the dataset roots: {', '.join(map(str, roots))} "
            "(MARSBENCH_DATASET_ROOTS)"
        )
        self.path = path
        self.roots = roots


async def _path_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PathNotAllowed)
    detail: dict[str, object] = {"path": exc.path, "roots": [str(root) for root in exc.roots]}
    return error_response(exc, 403, detail=detail)


def get_dataset_roots(request: Request) -> DatasetRoots:
    roots: DatasetRoots = getattr(request.app.state, "dataset_roots", DatasetRoots(()))
    return roots


DatasetRootsDep = Annotated[DatasetRoots, Depends(get_dataset_roots)]


class DatasetRootSettings(BaseSettings):
    """The indexer's and evaluator's dataset roots (prefix `MARSBENCH_`)."""

    model_config = SettingsConfigDict(env_prefix="MARSBENCH_", extra="ignore")

    dataset_roots: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Folders (comma-separated) that dataset_dir in requests must lie under, after "
        "resolving `..` and symlinks (403 otherwise). Empty: any folder, allowed only on loopback.",
    )

    @field_validator("dataset_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


# -- the one call -------------------------------------------------------------------------------


def install_security(app: FastAPI, settings: AccessSettings, *, static_prefixes: Sequence[str] = ()) -> None:
    """Refuse unsafe settings (StartupRefused), then guard `app`; see the module's docstring.

    `static_prefixes`: paths of static files that hold no data, served to GET and HEAD without the key.
    """
    key = required_key(settings)
    if isinstance(settings, DatasetRootSettings):
        if not settings.dataset_roots and not is_loopback(settings.host):
            raise StartupRefused(
                f"listening on {settings.host} (beyond loopback) needs MARSBENCH_DATASET_ROOTS: the "
                "folders requests may name datasets under"
            )
        app.state.dataset_roots = DatasetRoots.of(settings.dataset_roots)
    app.add_exception_handler(LimitExceeded, _limit_exceeded)
    app.add_exception_handler(PathNotAllowed, _path_not_allowed)
    body_setting = f"{settings.model_config.get('env_prefix', '')}MAX_BODY_MB".upper()
    max_bytes = int(settings.max_body_mb * MIB)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_bytes, setting=body_setting)
    # Added last, runs first: a request without the key is refused before its body is read.
    if key is not None:
        app.add_middleware(ApiKeyMiddleware, key=key, static_prefixes=tuple(static_prefixes))
