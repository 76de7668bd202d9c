"""Who may call the server, how often, and for how many dollars.

Keys come from ``settings.api_keys``. Each key has its own dollar budget and request rate
(``key_budget_usd``, ``key_requests_per_minute``). What a key has spent is kept in SQLite
(``<data_dir>/key_spend.sqlite``, keys stored as sha256 digests, never in clear), so a restart
does not hand a key a fresh budget; a request holds its worst-case cost there while it runs
(``SpendLedger.reserve``) and settles to its real cost when it ends. The rate window lives in
this process (a restart resets at most one minute of it). One API process owns the file (the compose file runs one).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import sqlite3
import threading
import time
import uuid
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
    """Dollars spent and dollars held per key, in a SQLite file that outlives the server process.

    A request *reserves* its worst-case cost before it runs and *settles* to its real cost after;
    the budget check and the reservation are one ``BEGIN IMMEDIATE`` transaction, so requests
    that arrive together cannot all pass a check made before any of them is charged. While a
    request runs, what its finished steps cost is written to its hold (``progress``), so the
    holds a killed process left behind are settled, at the next start, to what was spent.

    Args:
        path: The SQLite file (created with its folder).
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are opened explicitly (BEGIN IMMEDIATE below).
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30.0,
                                   isolation_level=None)
        self._db.execute("CREATE TABLE IF NOT EXISTS spend "
                         "(key_sha256 TEXT PRIMARY KEY, spent_usd REAL NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS holds (id TEXT PRIMARY KEY, "
                         "key_sha256 TEXT NOT NULL, reserved_usd REAL NOT NULL, "
                         "spent_usd REAL NOT NULL DEFAULT 0, created REAL NOT NULL)")
        self._lock = threading.Lock()

    @staticmethod
    def _digest(key: str) -> str:
        return hashlib.sha256(key.encode("utf-8")).hexdigest()

    def _spent(self, digest: str) -> float:
        row = self._db.execute("SELECT spent_usd FROM spend WHERE key_sha256 = ?",
                               (digest,)).fetchone()
        return float(row[0]) if row else 0.0

    def spent(self, key: str) -> float:
        """What ``key`` has spent so far (0 for a key never charged)."""
        with self._lock:
            return self._spent(self._digest(key))

    def held(self, key: str) -> float:
        """Dollars ``key``'s running requests hold (each the larger of its reservation and
        what it has spent so far)."""
        with self._lock:
            return self._held(self._digest(key))

    def _held(self, digest: str) -> float:
        row = self._db.execute("SELECT COALESCE(SUM(MAX(reserved_usd, spent_usd)), 0) FROM holds "
                               "WHERE key_sha256 = ?", (digest,)).fetchone()
        return float(row[0])

    def reserve(self, key: str, usd: float, budget_usd: float) -> str:
        """Hold ``usd`` for one request of ``key``, if its budget is not spent or held.

        Returns:
            The hold's id (``settle`` it when the request ends).

        Raises:
            BudgetSpent: What ``key`` spent reached ``budget_usd``.
            BudgetHeld: Spent and held together reach it (requests in flight may free some).
        """
        digest = self._digest(key)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                spent = self._spent(digest)
                if spent >= budget_usd:
                    raise BudgetSpent(spent)
                held = self._held(digest)
                if spent + held >= budget_usd:
                    raise BudgetHeld(spent, held)
                hold = uuid.uuid4().hex
                self._db.execute("INSERT INTO holds VALUES (?, ?, ?, 0, ?)",
                                 (hold, digest, usd, time.time()))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return hold

    def progress(self, hold: str, spent_usd: float) -> None:
        """Record what the request holding ``hold`` has spent so far."""
        with self._lock:
            self._db.execute("UPDATE holds SET spent_usd = MAX(spent_usd, ?) WHERE id = ?",
                             (spent_usd, hold))

    def settle(self, hold: str, usd: float) -> float:
        """End ``hold``: charge its key ``usd`` (committed before returning); the key's total."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT key_sha256 FROM holds WHERE id = ?",
                                       (hold,)).fetchone()
                if row is None:  # settled already
                    self._db.execute("COMMIT")
                    return 0.0
                self._add(row[0], usd)
                self._db.execute("DELETE FROM holds WHERE id = ?", (hold,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return self._spent(row[0])

    def recover(self) -> int:
        """Settle the holds a process that died left behind, each to what it recorded as
        spent; the number settled. Call it at startup, before any request runs."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                rows = self._db.execute("SELECT key_sha256, spent_usd FROM holds").fetchall()
                for digest, spent in rows:
                    self._add(digest, float(spent))
                self._db.execute("DELETE FROM holds")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return len(rows)

    def add(self, key: str, usd: float) -> float:
        """Add ``usd`` to ``key``'s spend, committed before returning; the new total."""
        with self._lock:
            self._add(self._digest(key), usd)
            return self._spent(self._digest(key))

    def _add(self, digest: str, usd: float) -> None:
        self._db.execute("INSERT INTO spend VALUES (?, ?) ON CONFLICT(key_sha256) DO UPDATE "
                         "SET spent_usd = spent_usd + excluded.spent_usd", (digest, usd))


class BudgetSpent(Exception):
    """The key's budget is spent."""

    def __init__(self, spent_usd: float) -> None:
        super().__init__(spent_usd)
        self.spent_usd = spent_usd


class BudgetHeld(Exception):
    """The key's budget is spent or held by its requests in flight."""

    def __init__(self, spent_usd: float, held_usd: float) -> None:
        super().__init__(spent_usd, held_usd)
        self.spent_usd = spent_usd
        self.held_usd = held_usd


@dataclass
class Hold:
    """One request's reservation: ``progress`` as steps finish, ``settle`` once at the end.

    Without a budget there is no ledger and the hold only adds to the in-process tally.
    """

    key: str
    reserved_usd: float
    _gate: Gate
    _id: str | None = None
    settled: bool = False

    def progress(self, spent_usd: float) -> None:
        """What the request has spent so far (kept for a restart to settle to)."""
        if self._id is not None and self._gate._ledger is not None and not self.settled:
            self._gate._ledger.progress(self._id, spent_usd)

    def settle(self, usd: float) -> None:
        """Charge what the request cost and free the rest of its reservation (once)."""
        if self.settled:
            return
        self.settled = True
        account = self._gate._account(self.key)
        if self._id is not None and self._gate._ledger is not None:
            account.spent_usd = self._gate._ledger.settle(self._id, usd)
        else:
            account.spent_usd += usd


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
        if self._ledger is not None:
            self._ledger.recover()  # holds a killed server left: settled to what they spent

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
        """Count one request against ``key``'s rate, after checking its budget is not spent.

        Raises:
            ApiError: 403 when the key's budget is spent, 429 when its rate is exceeded.
        """
        account = self._account(key)
        if self.budget_usd is not None and account.spent_usd >= self.budget_usd:
            raise self._spent_error(account.spent_usd)
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

    def reserve(self, key: str, usd: float) -> Hold:
        """Hold ``usd`` (a request's worst case) of ``key``'s budget until the request settles.

        The check and the hold are one transaction in the spend store, so concurrent requests
        overshoot the budget by at most one reservation (when each costs at most its own).

        Raises:
            ApiError: 403 when the budget is spent; 429 (``budget_held``, with ``Retry-After``)
                when what is left is held by the key's requests in flight.
        """
        if self._ledger is None or self.budget_usd is None:
            return Hold(key, usd, self)
        try:
            hold = self._ledger.reserve(key, usd, self.budget_usd)
        except BudgetSpent as exc:
            self._account(key).spent_usd = exc.spent_usd
            raise self._spent_error(exc.spent_usd) from None
        except BudgetHeld as exc:
            raise ApiError(429, f"this key's budget of ${self.budget_usd:g} is spent or held by "
                                f"its requests in flight (${exc.spent_usd:.6f} spent, "
                                f"${exc.held_usd:.6f} held); retry when they end",
                           type="rate_limit_error", code="budget_held",
                           headers={"Retry-After": "1"}) from None
        return Hold(key, usd, self, hold)

    def _spent_error(self, spent_usd: float) -> ApiError:
        return ApiError(403, f"this key's budget of ${self.budget_usd:g} is spent "
                             f"(${spent_usd:.6f})",
                        type="permission_error", code="budget_exceeded")

    @property
    def ledger(self) -> SpendLedger | None:
        """The persistent spend store, when budgets are on."""
        return self._ledger

    def spent(self, key: str) -> float:
        """Dollars ``key`` has spent so far."""
        return self._account(key).spent_usd

    def _account(self, key: str) -> _Account:
        account = self._accounts.get(key)
        if account is None:
            spent = self._ledger.spent(key) if self._ledger is not None else 0.0
            account = self._accounts[key] = _Account(spent_usd=spent)
        return account
