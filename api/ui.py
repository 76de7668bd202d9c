"""Security headers of the trace page (``/ui``).

The page is one HTML file with one inline ``<script>`` and one inline ``<style>``; the Content
Security Policy allows exactly those (by their sha256), connections to this server only, and no
framing, so an injected script or a page that frames ``/ui`` (clickjacking) gets nothing. The
page keeps the API key in ``sessionStorage`` (this tab only), never in ``localStorage``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


def _hashes(html: str, tag: str) -> list[str]:
    return [f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
            for kind, body in _INLINE.findall(html) if kind == tag]


def ui_headers(page: Path) -> dict[str, str]:
    """The response headers of the page at ``page``: CSP with its inline blocks' hashes, no
    framing, no MIME sniffing, no referrer."""
    html = page.read_text(encoding="utf-8")
    policy = "; ".join([
        "default-src 'none'",
        f"script-src {' '.join(_hashes(html, 'script'))}",
        f"style-src {' '.join(_hashes(html, 'style'))}",
        "connect-src 'self'",
        "img-src 'self' data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ])
    return {"Content-Security-Policy": policy, "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store"}
