"""The load-time check of every name a configuration refers to.

Owns: ``check_references(config, catalog)``. Each model id under ``routing`` (``fallback_paths`` keys
and values, ``cross_provider_chain``, ``universal_fallback``), ``providers.<name>.fallbacks``,
``tasks.<name>`` (``models``, ``fallbacks``) and ``strategies.<name>`` (``models``, ``fallback_model``)
must be in the catalog built from the config (its overlay files and ``models`` included); each provider
under ``providers`` must be a catalog provider or define one (``protocol``); each strategy name
(``routing.default_strategy``, ``tasks.<name>.strategy``, the ``experiments.strategy_split`` arms) a
built-in or configured strategy; each task name (``escalate_to``, the keys of ``strategies.<name>.models``)
a built-in or configured task; and each task's ``requirements`` valid. A miss is a ``ConfigError`` naming
the config file and the key path, with close matches: before this check, the planner dropped unknown
fallbacks silently and failed every request over an unknown strategy or task model.

A model that is in the catalog but deprecated, or whose provider has no credentials, passes: the planner
migrates or skips it per request, as documented. The router runs this once, when it is built.

Must not touch: the catalog, provider credentials, I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from modelplex.config import Config
from modelplex.errors import ConfigError, UnknownModelError, did_you_mean
from modelplex.policy.strategies import is_strategy, strategy_table, unknown_strategy
from modelplex.policy.tasks import BUILTIN_TASKS
from modelplex.selection import validate_requirements
from modelplex.types import Requirements

if TYPE_CHECKING:
    from modelplex.catalog.store import Catalog

MAX_SUGGESTIONS = 3


def check_references(config: Config, catalog: Catalog) -> None:
    """Raise ``ConfigError`` for the first name in ``config`` that refers to nothing (see the module)."""
    _Check(config, catalog).run()


class _Check:
    def __init__(self, config: Config, catalog: Catalog) -> None:
        self.config = config
        self.catalog = catalog
        self.file = config.source
        self.tasks = set(BUILTIN_TASKS) | set(config.tasks)
        self.strategies = strategy_table(config.strategies)

    def run(self) -> None:
        cfg = self.config
        self.providers()
        rc = cfg.routing
        self.strategy(rc.default_strategy, "routing.default_strategy")
        for source, chain in rc.fallback_paths.items():
            key = f"routing.fallback_paths.{source}"
            self.model(key, source)
            for i, target in enumerate(chain):
                self.model(f"{key}[{i}]", target)
        for i, step in enumerate(rc.cross_provider_chain):
            if isinstance(step, str):
                self.model(f"routing.cross_provider_chain[{i}]", step)
            else:  # the planner tries provider/model, then model
                names = [f"{step.provider}/{step.model}", step.model] if step.provider else [step.model]
                self.model(f"routing.cross_provider_chain[{i}].model", *names)
        uf = rc.universal_fallback
        if isinstance(uf, str):
            self.model("routing.universal_fallback", uf)
        elif uf:
            for i, name in enumerate(uf):
                self.model(f"routing.universal_fallback[{i}]", name)
        for name, tc in cfg.tasks.items():
            key = f"tasks.{name}"
            for i, model in enumerate(tc.models):
                self.model(f"{key}.models[{i}]", model)
            for i, model in enumerate(tc.fallbacks):
                self.model(f"{key}.fallbacks[{i}]", model)
            if tc.strategy is not None:
                self.strategy(tc.strategy, f"{key}.strategy")
            if tc.escalate_to is not None:
                self.task(tc.escalate_to, f"{key}.escalate_to")
            try:
                validate_requirements(Requirements.from_dict(tc.requirements))
            except ConfigError as exc:
                raise exc.located(file=self.file, prefix=f"{key}.requirements") from None
        for name, sc in cfg.strategies.items():
            key = f"strategies.{name}"
            for task, model in sc.models.items():
                self.task(task, f"{key}.models.{task}")
                self.model(f"{key}.models.{task}", model)
            if sc.fallback_model is not None:
                self.model(f"{key}.fallback_model", sc.fallback_model)
        for arm in cfg.experiments.strategy_split:
            self.strategy(arm, f"experiments.strategy_split.{arm}")

    def providers(self) -> None:
        """Every ``providers.<name>`` is a catalog provider: one that defines a provider of its own
        (``protocol``) has become one through the overlay, so a name still missing is a typo."""
        known = [p.name for p in self.catalog.providers()]
        for name, ps in self.config.providers.items():
            if self.catalog.find_provider(name) is None:
                raise ConfigError(f"unknown provider {name!r}{did_you_mean(name, known)}; a provider of your own "
                                  "needs its protocol and base_url", file=self.file, key=f"providers.{name}")
            for i, fallback in enumerate(ps.fallbacks):  # the planner also reads a bare name as <provider>/<name>
                self.model(f"providers.{name}.fallbacks[{i}]", fallback, f"{name}/{fallback}")

    def model(self, key: str, *names: str) -> None:
        """``names`` are the forms the planner tries in turn; one must be in the catalog."""
        catalog = self.catalog
        if any(catalog.find(n) is not None for n in names):
            return
        candidates = catalog.ambiguous(names[0])
        if candidates:
            raise ConfigError(f"{names[0]!r} could name more than one model: {', '.join(candidates)}; use its id",
                              file=self.file, key=key)
        raise ConfigError(str(UnknownModelError(names[0], _suggestions(catalog, names))), file=self.file, key=key)

    def strategy(self, name: str, key: str) -> None:
        if not is_strategy(name, self.strategies):
            raise unknown_strategy(name, self.strategies, file=self.file, key=key)

    def task(self, name: str, key: str) -> None:
        if name not in self.tasks:
            raise ConfigError(f"unknown task {name!r}{did_you_mean(name, self.tasks)}; known tasks: "
                              f"{', '.join(sorted(self.tasks))}", file=self.file, key=key)


def _suggestions(catalog: Catalog, names: Sequence[str]) -> list[str]:
    out: list[str] = []
    for name in names:
        for s in catalog.suggest(name):
            if s not in out:
                out.append(s)
    return out[:MAX_SUGGESTIONS]
