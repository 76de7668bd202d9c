"""Who may call the server, how often, and for how many dollars.

Keys come from ``settings.api_keys``. Each key has its own dollar budget and request rate
(``key_budget_usd``, ``key_requests_per_minute``). What a key has spent is kept in SQLite
(``<data_dir>/key_spend.sqlite``, keys stored as sha256 digests, never in clear), so a restart
does not hand a key a fresh budget; the rate window lives in this process (a restart resets at
most one minute of it). One API process owns the file (the compose file runs one).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

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


class SpendLedger:
    """Dollars spent per key, in a SQLite file that outlives the server process.

    Args:
        path: The SQLite file (created with its folder).
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30.0)
        self._db.execute("CREATE TABLE IF NOT EXISTS spend "
                         "(key_sha256 TEXT PRIMARY KEY, spent_usd REAL NOT NULL)")
        self._db.commit()
        self._lock = threading.Lock()

    @staticmethod
    def _digest(key: str) -> str:
        return hashlib.sha256(key.encode("utf-8")).hexdigest()

    def spent(self, key: str) -> float:
        """What ``key`` has spent so far (0 for a key never charged)."""
        with self._lock:
            row = self._db.execute("SELECT spent_usd FROM spend WHERE key_sha256 = ?",
                                   (self._digest(key),)).fetchone()
        return float(row[0]) if row else 0.0

    def add(self, key: str, usd: float) -> float:
        """Add ``usd`` to ``key``'s spend, committed before returning; the new total."""
        with self._lock:
            self._db.execute("INSERT INTO spend VALUES (?, ?) ON CONFLICT(key_sha256) DO UPDATE "
                             "SET spent_usd = spent_usd + excluded.spent_usd",
                             (self._digest(key), usd))
            self._db.commit()
            row = self._db.execute("SELECT spent_usd FROM spend WHERE key_sha256 = ?",
                                   (self._digest(key),)).fetchone()
        return float(row[0])


class Gate:
    """Authenticates requests and enforces per-key budgets and rate limits.

    Args:
        settings: ``api_keys``, ``key_budget_usd`` and ``key_requests_per_minute``; with a
            budget, spend persists in ``<data_dir>/key_spend.sqlite``.
        clock: Monotonic seconds (tests of the window pass their own).
    """

    def __init__(self, settings: Settings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.keys = list(settings.api_keys)
        self.budget_usd = settings.key_budget_usd
        self.per_minute = settings.key_requests_per_minute
        self._clock = clock
        self._accounts: dict[str, _Account] = {}
        self._ledger = SpendLedger(settings.data_dir / "key_spend.sqlite") \
            if self.budget_usd is not None else None

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
        account = self._account(key)
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
        """Add what a completion cost to ``key``'s spend (persisted when budgets are on)."""
        account = self._account(key)
        if self._ledger is not None:
            account.spent_usd = self._ledger.add(key, usd)
        else:
            account.spent_usd += usd

    def spent(self, key: str) -> float:
        """Dollars ``key`` has spent so far."""
        return self._account(key).spent_usd

    def _account(self, key: str) -> _Account:
        account = self._accounts.get(key)
        if account is None:
            spent = self._ledger.spent(key) if self._ledger is not None else 0.0
            account = self._accounts[key] = _Account(spent_usd=spent)
        return account
