"""The URL fetcher the report PDF renderer (weasyprint) uses: the portal's own static files and the
images the report generated, and nothing else.

weasyprint's default fetcher follows every ``url()``, ``<img src>`` and ``<link href>`` of the HTML:
``http(s)://`` (a request from the server to anywhere: server-side request forgery), ``file://``
(any file the process may read) and ``ftp://``. A value that reaches the HTML unescaped into CSS, a
label colour for instance, would make the renderer fetch what it names. This fetcher refuses every
URL except

- ``file:`` URLs of regular files inside one of the given static roots (after resolving ``..`` and
  symbolic links), and
- ``data:`` URIs given to it up front (the key images the report rendered itself).

A refused URL raises :class:`RefusedURL`; weasyprint logs it and renders without the resource. The URLs
are kept in :attr:`StaticOnlyURLFetcher.refused` (and those served in ``served``) for tests and logs.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from weasyprint.urls import URLFetcher, URLFetcherResponse

__all__ = ["RefusedURL", "StaticOnlyURLFetcher"]


class RefusedURL(ValueError):
    """A URL the report renderer may not fetch."""


class StaticOnlyURLFetcher(URLFetcher):
    """Serve only files under ``static_roots`` and the ``data_uris`` given; refuse everything else.

    Parameters
    ----------
    static_roots : sequence of Path
        Folders whose regular files may be read (the portal's static files).
    data_uris : iterable of str
        ``data:`` URIs the caller generated (exact strings); any other ``data:`` URI is refused.

    Notes
    -----
    Redirects are never followed and no network handler is ever reached: ``http``, ``https``,
    ``ftp`` and any other scheme raise :class:`RefusedURL` before a connection is made.
    """

    def __init__(self, *, static_roots: Sequence[Path], data_uris: Iterable[str] = ()):
        super().__init__(allowed_protocols=("file", "data"), allow_redirects=False, fail_on_errors=False)
        self._roots = [Path(root).resolve() for root in static_roots if Path(root).is_dir()]
        self._data_uris = frozenset(data_uris)
        self.served: list[str] = []
        self.refused: list[str] = []

    def _refuse(self, url: str, why: str) -> RefusedURL:
        self.refused.append(url)
        return RefusedURL(f"the report renderer does not fetch {why}")

    def fetch(self, url, headers=None):
        """Return the resource at ``url`` when it is allowed.

        Raises
        ------
        RefusedURL
            For any URL that is neither a file under a static root nor a known ``data:`` URI.
        """
        scheme = urlsplit(url).scheme.lower()
        if scheme == "data":
            if url not in self._data_uris:
                raise self._refuse(url, "data: URIs it did not generate")
            self.served.append(url)
            return super().fetch(url, headers)
        if scheme != "file":
            raise self._refuse(url, f"{scheme or 'relative'} URLs")
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise self._refuse(url, "files on other hosts")
        try:
            path = Path(url2pathname(parts.path)).resolve(strict=True)
        except (OSError, RuntimeError):
            raise self._refuse(url, "missing files") from None
        if not path.is_file() or not any(path.is_relative_to(root) for root in self._roots):
            raise self._refuse(url, "files outside the static folders")
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        self.served.append(url)
        return URLFetcherResponse(path.as_uri(), body=path.read_bytes(), headers={"Content-Type": content_type})
