"""Roles chosen by name in the settings, built by factories that plugins add to.

Each role setting is a *spec*, ``FACTORY`` or ``FACTORY:ARGUMENT``::

    answerer = "litellm:openai/gpt-4o-mini"   # or simply "openai/gpt-4o-mini"
    critic = "local/slow"                     # the world's slow model, through litellm
    searcher = "chroma"                       # the `collection`, else the world's corpus
    prober = "off"                            # no prober

    [role_options.searcher]                   # parameters for the searcher's factory
    top_k = 3

A spec whose first part names no factory is the argument of the role's default factory: a model
id for ``litellm`` (answerer, critic), a model directory or id for ``transformers`` (prober).
The searcher has no default: its spec always names a factory.

Stock factories: ``litellm`` (answerer, critic), ``chroma`` (searcher), ``transformers``
(prober) and ``off`` (any role: the role is absent, and graphs that need it skip it). A package
adds its own under the entry-point group ``knowgate.roles``::

    [project.entry-points."knowgate.roles"]
    my-search = "my_package.search:FACTORY"

where ``FACTORY = RoleFactory(roles={"searcher"}, build=make_searcher)`` and
``make_searcher(request)`` returns an object implementing the role's protocol
(``knowgate.roles.Searcher``). Graphs see only that protocol.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from knowgate.errors import KnowgateError, UserError
from knowgate.plugins import ROLE_GROUP, PluginFailure, load_entry_points
from knowgate.roles import ROLE_NAMES, Answerer, Critic, Prober, Searcher
from knowgate.settings import Settings

PROTOCOLS: dict[str, type] = {"answerer": Answerer, "critic": Critic, "prober": Prober,
                              "searcher": Searcher}
# The factory a spec means when it names none (the searcher has none: it is always named).
_DEFAULT_FACTORY = {"answerer": "litellm", "critic": "litellm", "prober": "transformers"}
# What an unset role setting means (a prober of ``None``: the world's fast model).
_UNSET_SPEC = {"prober": "transformers"}


@dataclass(frozen=True)
class RoleSpec:
    """A role setting, parsed: which factory builds the role, with which argument.

    Attributes:
        role: ``answerer``, ``critic``, ``prober`` or ``searcher``.
        factory: The factory's registered name.
        argument: What follows ``FACTORY:`` (a model id, a collection ...), if anything.
    """

    role: str
    factory: str
    argument: str | None = None

    def __str__(self) -> str:
        return self.factory if self.argument is None else f"{self.factory}:{self.argument}"


@dataclass(frozen=True)
class RoleRequest:
    """What a factory is asked to build.

    Attributes:
        role: The role to build.
        argument: The spec's argument (``None`` when the spec is the bare factory name).
        options: The ``role_options.<role>`` table of the settings.
        settings: All the settings (timeouts, data directory ...).
        assembly: The composition root's shared resources (the litellm Router, the world, the
            progress callback): ``knowgate.composition.Assembly``.
    """

    role: str
    argument: str | None
    options: Mapping[str, Any]
    settings: Settings
    assembly: Any = None

    def require_argument(self, what: str) -> str:
        """The argument, or a ``UserError`` saying the spec needs ``FACTORY:<what>``."""
        if not self.argument:
            raise UserError(f"the {self.role} spec needs an argument: FACTORY:{what}")
        return self.argument

    def refuse_options(self, factory: str) -> None:
        """A ``UserError`` when options were given to a factory that takes none."""
        if self.options:
            raise UserError(f"role_options.{self.role}: the {factory!r} factory takes no "
                            f"options (got {', '.join(sorted(self.options))})")


@dataclass(frozen=True)
class RoleFactory:
    """Builds roles from specs.

    Attributes:
        roles: The roles it can build (a subset of ``answerer``, ``critic``, ``prober``,
            ``searcher``).
        build: ``build(request)`` returns the role (an object implementing its protocol), or
            ``None`` for an absent role; raises ``UserError`` for a bad argument or option.
        price: ``price(request)`` is the expected dollars of one call of the role, which the
            policy weighs before it calls (``None``: free). ``calibrate`` and every run read
            the same estimate.
        description: One line for listings.
    """

    roles: frozenset[str]
    build: Callable[[RoleRequest], Any]
    price: Callable[[RoleRequest], float] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "roles", frozenset(self.roles))
        unknown = self.roles - set(ROLE_NAMES)
        if not self.roles or unknown:
            raise ValueError(f"a RoleFactory builds some of {', '.join(ROLE_NAMES)}; "
                             f"got {sorted(self.roles)}")


@dataclass
class RoleRegistry:
    """Role factories by name: the stock ones, then every installed ``knowgate.roles`` entry
    point (loaded once, on first use)."""

    factories: dict[str, RoleFactory] = field(default_factory=dict)
    failures: dict[str, PluginFailure] = field(default_factory=dict)
    _loaded: bool = False

    def register(self, name: str, factory: RoleFactory) -> None:
        """Add ``factory`` under ``name`` (a plain word: it is what specs write before ``:``)."""
        if not name or not name.replace("-", "").replace("_", "").isalnum() or not (
                name[0].isalpha()):
            raise UserError(f"role factory name {name!r} must be a word (letters, digits, - _)")
        if name in self.factories:
            raise UserError(f"role factory name {name!r} is taken")
        self.factories[name] = factory

    def load_plugins(self) -> list[PluginFailure]:
        """Register every installed ``knowgate.roles`` entry point (once) and return those
        that failed, each naming its plugin."""
        if not self._loaded:
            self._loaded = True
            loaded, failures = load_entry_points(ROLE_GROUP, self._prepare)
            for name, factory in loaded.items():
                self.factories[name] = factory
            self.failures.update({f.name: f for f in failures})
        return list(self.failures.values())

    def _prepare(self, name: str, value: Any) -> RoleFactory:
        if not isinstance(value, RoleFactory):
            raise TypeError(f"{type(value).__name__} is not a knowgate.role_factories.RoleFactory")
        if name in self.factories:
            raise ValueError(f"the role factory name {name!r} is already registered")
        return value

    def names(self) -> list[str]:
        """Every factory name (plugins' included), sorted."""
        self.load_plugins()
        return sorted(self.factories)

    def parse(self, role: str, spec: str | None) -> RoleSpec:
        """The ``RoleSpec`` a role setting means.

        Raises:
            UserError: The spec names a factory that failed to load, or none at all for the
                searcher, or one that does not build this role.
        """
        if role not in ROLE_NAMES:
            raise UserError(f"unknown role {role!r}; roles are {', '.join(ROLE_NAMES)}")
        self.load_plugins()
        spec = _UNSET_SPEC.get(role) if spec is None else spec
        if not spec:
            raise UserError(f"the {role} setting is empty")
        head, sep, rest = spec.partition(":")
        if head in self.failures and head not in self.factories:
            raise UserError(self.failures[head].message())
        if head in self.factories:
            parsed = RoleSpec(role, head, rest if sep else None)
        elif role in _DEFAULT_FACTORY:
            parsed = RoleSpec(role, _DEFAULT_FACTORY[role], spec)
        else:
            raise UserError(self._unknown(role, head))
        if role not in self.factories[parsed.factory].roles:
            builds = ", ".join(sorted(self.factories[parsed.factory].roles))
            raise UserError(f"the role factory {parsed.factory!r} builds {builds}, not the "
                            f"{role}; {role} factories: {', '.join(self.serving(role))}")
        return parsed

    def serving(self, role: str) -> list[str]:
        """The factory names that build ``role``."""
        return [name for name in self.names() if role in self.factories[name].roles]

    def _unknown(self, role: str, head: str) -> str:
        choices = self.serving(role)
        close = difflib.get_close_matches(head, choices, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return (f"no role factory {head!r} builds the {role}{hint} (choose one of "
                f"{', '.join(choices)})")

    def price(self, spec: RoleSpec, settings: Settings, assembly: Any = None) -> float:
        """Expected dollars of one call of the role ``spec`` names (0 when its factory gives
        no price).

        Raises:
            UserError: The factory's estimate failed or is not a non-negative number.
        """
        factory = self.factories[spec.factory]
        if factory.price is None:
            return 0.0
        try:
            dollars = float(factory.price(self._request(spec, settings, assembly)))
        except KnowgateError:
            raise
        except Exception as exc:
            raise UserError(f"the role factory {spec.factory!r} could not price the "
                            f"{spec.role} ({spec}): {type(exc).__name__}: {exc}") from exc
        if not dollars >= 0.0:  # also refuses NaN
            raise UserError(f"the role factory {spec.factory!r} priced the {spec.role} at "
                            f"{dollars!r} dollars a call")
        return dollars

    @staticmethod
    def _request(spec: RoleSpec, settings: Settings, assembly: Any) -> RoleRequest:
        return RoleRequest(spec.role, spec.argument, settings.role_options.get(spec.role, {}),
                           settings, assembly)

    def build(self, spec: RoleSpec, settings: Settings, assembly: Any = None) -> Any:
        """Build the role ``spec`` names and check it implements the role's protocol.

        Raises:
            KnowgateError: The factory refused its argument or options (``UserError``), or
                could not load what it builds.
            UserError: The factory failed in any other way, or built something that is not
                the role.
        """
        factory = self.factories[spec.factory]
        try:
            role = factory.build(self._request(spec, settings, assembly))
        except KnowgateError:  # already typed and worded (a model that will not load ...)
            raise
        except Exception as exc:  # a plugin's bug: named, not a traceback
            raise UserError(f"the role factory {spec.factory!r} could not build the "
                            f"{spec.role} ({spec}): {type(exc).__name__}: {exc}") from exc
        if role is not None and not isinstance(role, PROTOCOLS[spec.role]):
            raise UserError(f"the role factory {spec.factory!r} built a "
                            f"{type(role).__name__}, which does not implement the "
                            f"{spec.role} protocol (knowgate.roles.{PROTOCOLS[spec.role].__name__})")
        return role
