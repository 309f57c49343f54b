"""What the client's configuration must satisfy, checked at construction, before any
request: the key, the base URL, the request source."""

from __future__ import annotations

import ipaddress
import os
import urllib.request

from yarl import URL

from .._errors import ConfigurationError
from .secret import Secret

__all__ = [
    "DEFAULT_BASE_URL",
    "KEY_ENV_VARS",
    "REQUEST_SOURCES",
    "URL_ENV_VAR",
    "check_request_source",
    "is_loopback",
    "resolve_base_url",
    "resolve_key",
    "resolve_proxy",
]

DEFAULT_BASE_URL = "https://app.dumplingai.com"
KEY_ENV_VARS = ("DUMPLINGAI_API_KEY", "DUMPLING_API_KEY")
URL_ENV_VAR = "DUMPLINGAI_API_URL"
REQUEST_SOURCES = frozenset(
    {
        "API",
        "WEB",
        "MAKE_DOT_COM",
        "ZAPIER",
        "N8N",
        "PLAYGROUND",
        "DEFAULT_AUTOMATION",
        "AGENT_PREVIEW",
        "AGENT_LIVE",
        "AUTOPILOT",
        "STUDIO",
    }
)
_LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_key(api_key: str | None) -> Secret:
    """The key given, else the first of ``KEY_ENV_VARS`` set; wrapped so it never shows."""
    if api_key is None:
        for name in KEY_ENV_VARS:
            value = os.environ.get(name, "").strip()
            if value:
                api_key = value
                break
    if api_key is None or not api_key.strip():
        raise ConfigurationError(
            "no DumplingAI API key: pass api_key= or set DUMPLINGAI_API_KEY (or DUMPLING_API_KEY)"
        )
    if not isinstance(api_key, str) or any(ch in api_key for ch in "\r\n\0"):
        raise ConfigurationError("the API key must be a single-line string")
    return Secret(api_key.strip())


def resolve_base_url(base_url: str | None, *, allow_insecure_http: bool) -> URL:
    """The host root to send to: *base_url*, ``DUMPLINGAI_API_URL`` or the vendor's.

    Plain ``http://`` is refused except to loopback: the key would travel in clear.
    """
    text = base_url or os.environ.get(URL_ENV_VAR, "").strip() or DEFAULT_BASE_URL
    try:
        url = URL(text)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"invalid base_url {text!r}: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"base_url must be an http(s) URL with a host, got {text!r}")
    if url.user or url.password or url.query_string or url.fragment:
        raise ConfigurationError("base_url must not carry credentials, a query or a fragment")
    if url.scheme == "http" and not is_loopback(url.host) and not allow_insecure_http:
        raise ConfigurationError(
            f"refusing plain http:// to {url.host}: the API key would travel in clear text "
            "(pass allow_insecure_http=True to accept that)"
        )
    return url


def resolve_proxy(
    proxy: str | None, base_url: URL, *, trust_env: bool = True, allow_insecure_http: bool
) -> str | None:
    """The proxy requests to *base_url* go through: *proxy*, else (with *trust_env*) the
    one the environment names for its scheme (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``ALL_PROXY``) unless ``NO_PROXY`` covers the host; read once, here, as httpx does.

    The proxy must not see the key in clear: through a proxy, a plain ``http://`` API is
    only allowed when both are on this machine (or with ``allow_insecure_http``); an
    ``https://`` API is tunnelled, the key encrypted."""
    chosen = proxy
    if proxy is not None:
        if _proxy_host(proxy) is None or not proxy.startswith(("http://", "https://")):
            # The URL is not echoed: it may hold the proxy's password.
            raise ConfigurationError("proxy must be an http(s) URL with a host")
    elif trust_env and base_url.host and not urllib.request.proxy_bypass(base_url.host):
        found = urllib.request.getproxies()
        chosen = found.get(base_url.scheme) or found.get("all") or None
        if chosen is not None and "://" not in chosen:
            chosen = f"http://{chosen}"  # HTTP_PROXY=host:port, as curl reads it
    if chosen and base_url.scheme == "http" and not allow_insecure_http:
        host = _proxy_host(chosen)
        if not (is_loopback(host) and is_loopback(base_url.host)):
            raise ConfigurationError(
                f"refusing to send the API key in clear through the proxy {host}: use an "
                "https:// base_url (tunnelled), or pass allow_insecure_http=True"
            )
    return chosen


def _proxy_host(proxy: str) -> str | None:
    try:
        return URL(proxy if "://" in proxy else f"http://{proxy}").host
    except ValueError:
        return None


def check_request_source(value: str | None) -> str | None:
    if value is not None and value not in REQUEST_SOURCES:
        raise ConfigurationError(
            f"request_source must be one of {sorted(REQUEST_SOURCES)}, got {value!r}"
        )
    return value
