"""Letting ``huggingface_hub``'s inference clients reach self-hosted servers in offline mode.

With ``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE=1``), which this project sets so that models
load from local files only, ``huggingface_hub`` refuses *every* HTTP request of its shared client,
including ``InferenceClient("http://127.0.0.1:18090")`` talking to this server:
``OfflineModeIsEnabled: Cannot reach http://127.0.0.1:18090``. Offline mode is meant to keep the
Hub away, not a local TGI, so :func:`allow_self_hosted_inference` installs client factories that
still refuse the Hub when offline but let requests to any other host through.
"""

from __future__ import annotations

from urllib.parse import urlparse

import httpx
from huggingface_hub import constants, set_async_client_factory, set_client_factory
from huggingface_hub.errors import OfflineModeIsEnabled

# Hosts that offline mode keeps away: the configured endpoint and Hugging Face's own domains.
_HUB_DOMAINS = ("huggingface.co", "hf.co")


def is_hub_host(host: str) -> bool:
    """Whether ``host`` is the Hugging Face Hub (the configured endpoint or a Hugging Face domain)."""
    endpoint = urlparse(constants.ENDPOINT).hostname
    return host == endpoint or any(host == d or host.endswith("." + d) for d in _HUB_DOMAINS)


def _refuse_hub_when_offline(request: httpx.Request) -> None:
    if constants.is_offline_mode() and is_hub_host(request.url.host):
        raise OfflineModeIsEnabled(
            f"Cannot reach {request.url}: offline mode is enabled (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."
        )


async def _refuse_hub_when_offline_async(request: httpx.Request) -> None:
    _refuse_hub_when_offline(request)


async def _read_error_body(response: httpx.Response) -> None:
    # As huggingface_hub's own async hook: read an error's (small) body while the stream is open, so
    # that the raised error can quote the server's message.
    if response.status_code >= 400:
        await response.aread()


def _client() -> httpx.Client:
    return httpx.Client(
        event_hooks={"request": [_refuse_hub_when_offline]}, follow_redirects=True, timeout=None
    )


def _async_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        event_hooks={"request": [_refuse_hub_when_offline_async], "response": [_read_error_body]},
        follow_redirects=True,
        timeout=None,
    )


def allow_self_hosted_inference() -> None:
    """Make ``InferenceClient`` / ``AsyncInferenceClient`` reach non-Hub hosts even in offline mode.

    Process-wide (``huggingface_hub`` has one client factory) and idempotent; Hub requests are still
    refused while offline. Call it once at startup, before the first inference call.
    """
    set_client_factory(_client)
    set_async_client_factory(_async_client)
