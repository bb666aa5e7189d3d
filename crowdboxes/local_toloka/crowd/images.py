"""Loading a task's image as a worker's browser would: fetch the URL, decode it, remember what loaded.

``file://``, ``http://`` and ``https://`` only; a proxy from the environment is bypassed for loopback hosts
(local S3, tests). A failure (network, 404, not an image, truncated) means "the worker could not load it"
and is not cached (it may be transient); a success is cached per URL as ``(sha256, width, height)``.
"""

from __future__ import annotations

import hashlib
import io
import threading
import urllib.parse
import urllib.request
from collections import OrderedDict

FETCH_TIMEOUT = 5.0
CACHE_SIZE = 4096
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def fetch_bytes(url: str, timeout: float = FETCH_TIMEOUT) -> bytes | None:
    """The bytes at ``url``, or None if they cannot be fetched."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    try:
        if scheme == "file":
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - file only
                return response.read()
        if scheme in ("http", "https"):
            import requests

            with requests.Session() as session:
                host = (urllib.parse.urlsplit(url).hostname or "").lower()
                session.trust_env = host not in _LOOPBACK
                response = session.get(url, timeout=timeout)
                return response.content if response.status_code == 200 else None
    except Exception:  # any network/file failure means "the worker could not load the image"
        return None
    return None


def decode(data: bytes | None) -> tuple[str, int, int] | None:
    """``(sha256, width, height)`` of image bytes; None if they are not a complete image."""
    if not data:
        return None
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            image.load()  # a truncated file fails here, not in open()
            size = image.size
    except Exception:
        return None
    return hashlib.sha256(data).hexdigest(), int(size[0]), int(size[1])


class ImageCache:
    """Thread-safe LRU of URL -> ``(sha256, width, height)``."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = int(size)
        self._items: OrderedDict[str, tuple[str, int, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, url: str) -> tuple[str, int, int] | None:
        with self._lock:
            if url in self._items:
                self._items.move_to_end(url)
                return self._items[url]
        return None

    def put(self, url: str, info: tuple[str, int, int]) -> None:
        with self._lock:
            self._items[url] = info
            while len(self._items) > self.size:
                self._items.popitem(last=False)
