"""Who may call the server, how often, and for how many dollars.

Keys come from ``settings.api_keys``. Each key has its own dollar budget and request rate
(``key_budget_usd``, ``key_requests_per_minute``), kept in this process: a restart starts every
key's spend and rate window afresh (the compose file runs one API process).
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from knowgate.api.errors import ApiError
from knowgate.errors import UserError
from knowgate.settings import Settings

ANONYMOUS = "anonymous"
"""The caller's name when no keys are configured (loopback only)."""
_WINDOW_S = 60.0


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.1``, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, settings: Settings) -> None:
    """Refuse to serve beyond loopback without API keys.

    Raises:
        UserError: ``host`` is not loopback and no keys are configured.
    """
    if not settings.api_keys and not is_loopback(host):
        raise UserError(f"refusing to listen on {host} without API keys: set KNOWGATE_API_KEYS "
                        "(a JSON list) or bind to 127.0.0.1")


@dataclass
class _Account:
    spent_usd: float = 0.0
    recent: deque[float] = field(default_factory=deque)


class Gate:
    """Authenticates requests and enforces per-key budgets and rate limits.

    Args:
        settings: ``api_keys``, ``key_budget_usd`` and ``key_requests_per_minute``.
        clock: Monotonic seconds (tests of the window pass their own).
    """

    def __init__(self, settings: Settings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.keys = list(settings.api_keys)
        self.budget_usd = settings.key_budget_usd
        self.per_minute = settings.key_requests_per_minute
        self._clock = clock
        self._accounts: dict[str, _Account] = {}

    def authenticate(self, authorization: str | None) -> str:
        """The key a request's ``Authorization: Bearer KEY`` header names.

        Raises:
            ApiError: 401 when keys are configured and the header is missing or unknown.
        """
        if not self.keys:
            return ANONYMOUS
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "missing API key: send 'Authorization: Bearer KEY'",
                           type="authentication_error", code="invalid_api_key")
        for key in self.keys:
            if hmac.compare_digest(token.encode(), key.encode()):
                return key
        raise ApiError(401, "unknown API key", type="authentication_error",
                       code="invalid_api_key")

    def admit(self, key: str) -> None:
        """Count one request against ``key``'s rate, after checking its budget.

        Raises:
            ApiError: 403 when the key's budget is spent, 429 when its rate is exceeded.
        """
        account = self._accounts.setdefault(key, _Account())
        if self.budget_usd is not None and account.spent_usd >= self.budget_usd:
            raise ApiError(403, f"this key's budget of ${self.budget_usd:g} is spent "
                                f"(${account.spent_usd:.6f})",
                           type="permission_error", code="budget_exceeded")
        if self.per_minute is not None:
            now = self._clock()
            while account.recent and account.recent[0] <= now - _WINDOW_S:
                account.recent.popleft()
            if len(account.recent) >= self.per_minute:
                wait = max(1, math.ceil(account.recent[0] + _WINDOW_S - now))
                raise ApiError(429, f"rate limit of {self.per_minute} requests per minute "
                                    f"reached; retry in {wait} s",
                               type="rate_limit_error", code="rate_limit_exceeded",
                               headers={"Retry-After": str(wait)})
            account.recent.append(now)

    def charge(self, key: str, usd: float) -> None:
        """Add what a completion cost to ``key``'s spend."""
        self._accounts.setdefault(key, _Account()).spent_usd += usd

    def spent(self, key: str) -> float:
        """Dollars ``key`` has spent so far."""
        account = self._accounts.get(key)
        return account.spent_usd if account else 0.0
