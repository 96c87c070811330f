"""L2: configuration resolution: chart defaults < ConfigMap < values files < ``--set``.

:func:`resolve` takes already-read inputs (parsed YAML mappings, ``--set`` strings, ConfigMap
data), merges the Helm values the way Helm does (:mod:`.values`), renders them into
``cilium-config`` keys through the chart table (:mod:`.chart`), lays a given ConfigMap over the
keys still at their defaults, parses everything into typed settings and runs the cross-key
checks (:mod:`.checks`). Every problem is collected and raised at once as
:class:`~pylium.model.config.ConfigErrors`; warnings come back as data in :class:`Resolved`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pylium.base.errors import ConfigError
from pylium.core.settings import chart, checks
from pylium.core.settings import values as v
from pylium.core.settings.legacy import upgrade_legacy
from pylium.model.config import (
    AgentSettings,
    ConfigErrors,
    OperatorSettings,
    all_keys,
    render_scalar,
    suggest,
)

DEFAULT = "default"
SET = "--set"
SET_STRING = "--set-string"


@dataclass(frozen=True, slots=True, kw_only=True)
class Resolved:
    """Effective settings, where each key came from, and non-fatal warnings."""

    settings: AgentSettings
    operator: OperatorSettings
    sources: Mapping[str, str]
    """ConfigMap key -> ``default``, ``values file X``, ``--set``, ``--set-string`` or
    ``configmap X``."""
    warnings: tuple[str, ...] = ()
    operator_replicas: int = 1
    """Helm ``operator.replicas`` (how many operators the lab runs; 1 when unset)."""

    def as_configmap(self) -> dict[str, str]:
        """The flat ``cilium-config`` data (agent and operator keys), sorted by key."""
        return dict(
            sorted({**self.operator.to_configmap(), **self.settings.to_configmap()}.items())
        )

    def rows(self) -> list[tuple[str, str, str]]:
        """(key, value, source) for every key, sorted by key."""
        return [(k, val, self.sources.get(k, DEFAULT)) for k, val in self.as_configmap().items()]


def values_file_source(name: str) -> str:
    return f"values file {name}"


def configmap_source(name: str) -> str:
    return f"configmap {name}"


def configmap_data(document: Any, source: str) -> dict[str, str]:
    """ConfigMap data from a parsed document: ``kind: ConfigMap`` with ``data:``, or a flat
    mapping of kebab-case keys. Scalars are rendered as strings (``24`` -> ``"24"``)."""
    if isinstance(document, Mapping) and document.get("kind") == "ConfigMap":
        data = document.get("data") or {}
    else:
        data = document
    if not isinstance(data, Mapping):
        raise ConfigError(
            "data", "expected a ConfigMap or a mapping of keys to values", source=source
        )
    out: dict[str, str] = {}
    problems = []
    for key, value in data.items():
        if isinstance(value, Mapping):
            problems.append(
                ConfigError(str(key), "expected a string value, got a map", source=source)
            )
        else:
            out[str(key)] = "" if value is None else render_scalar(value)
    if problems:
        raise ConfigErrors(problems)
    return out


def parse_flat(text: str, source: str) -> dict[str, str]:
    """``key=value`` lines (``#`` comments and blank lines ignored)."""
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"line {number}", f'expected key=value, got "{stripped}"', source=source
            )
        out[key.strip()] = value.strip()
    return out


def _check_paths(tree: Mapping[str, Any], source: str) -> list[ConfigError]:
    """Unknown Helm value paths in one layer, each with a did-you-mean."""
    known = chart.known_paths()
    problems = []
    for path, value in v.leaf_paths(tree):
        first_index = next((i for i, p in enumerate(path) if isinstance(p, int)), len(path))
        dotted = v.format_path(path[:first_index])
        if dotted in known or any(dotted.startswith(m + ".") for m in chart.FREE_MAPS):
            continue
        subtree = any(k.startswith(dotted + ".") for k in known)
        if subtree and (value is None or value == {}):
            continue  # null (or empty map) over a whole subtree: allowed
        if any(k.startswith(dotted + ".") for k in known):
            children = sorted(k for k in known if k.startswith(dotted + "."))[:3]
            message = f"is a map of values ({', '.join(children)}, ...), not a single value"
        else:
            message = (
                f"unknown Helm value (set to {render_scalar(value)!r}){suggest(dotted, known)}"
            )
        problems.append(ConfigError(v.format_path(path), message, source=source))
    return problems


def _check_keys(data: Mapping[str, str], source: str) -> list[ConfigError]:
    known = all_keys()
    return [
        ConfigError(
            key, f"unknown ConfigMap key (value {data[key]!r}){suggest(key, known)}", source=source
        )
        for key in data
        if key not in known
    ]


def _overlaps(a: v.Path, b: v.Path) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def resolve(
    *,
    values_files: Sequence[tuple[str, Mapping[str, Any]]] = (),
    sets: Sequence[str] = (),
    set_strings: Sequence[str] = (),
    configmap: tuple[str, Mapping[str, str]] | None = None,
    chart_defaults: Mapping[str, Any] = chart.CHART_DEFAULTS,
) -> Resolved:
    """Effective settings from Helm values and/or a ConfigMap.

    ``values_files`` are (name, parsed mapping) in order, later wins; ``sets`` and
    ``set_strings`` are Helm ``--set``/``--set-string`` expressions, applied after the files
    (``--set-string`` after ``--set``, as Helm does); ``configmap`` is (name, data) and fills
    every key the Helm values leave at its default. Raises ConfigErrors listing every problem.
    """
    problems: list[ConfigError] = []
    warnings: list[str] = []
    layers: list[tuple[str, list[v.Path]]] = []
    user: dict[str, Any] = {}
    for name, tree in values_files:
        source = values_file_source(name)
        if not isinstance(tree, Mapping):
            problems.append(ConfigError("values", "a values file must be a mapping", source=source))
            continue
        problems.extend(_check_paths(tree, source))
        user = v.merge(user, tree)
        layers.append((source, [p for p, _ in v.leaf_paths(tree)]))
    for source, expressions, as_string in ((SET, sets, False), (SET_STRING, set_strings, True)):
        for expression in expressions:
            try:
                v.parse_set_into(user, expression, as_string=as_string, source=source)
                layer = v.parse_set(expression, as_string=as_string)
            except ConfigError as err:
                problems.append(err)
                continue
            problems.extend(_check_paths(layer, source))
            layers.append((source, [p for p, _ in v.leaf_paths(layer)]))
    for path, _ in v.leaf_paths(user):
        dotted = v.format_path(path)
        if dotted in chart.PASSIVE:
            warnings.append(f"{dotted}: accepted but not used by pylium ({chart.PASSIVE[dotted]})")

    merged = v.coalesce(chart_defaults, user)
    replicas = v.get(merged, "operator.replicas")
    operator_replicas = 1
    if replicas is not None:
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
            touched = _last_touch(("operator.replicas",), layers)
            problems.append(
                ConfigError(
                    "operator.replicas",
                    f"{replicas!r}: give a replica count of at least 1",
                    source=touched[0] if touched else DEFAULT,
                )
            )
        else:
            operator_replicas = replicas
    data: dict[str, str] = {}
    sources: dict[str, str] = {}
    helm_paths: dict[str, str] = {}  # key -> the user-set Helm path that decided it
    baseline = chart.render(v.coalesce(chart_defaults, {}))
    for key, rendered in chart.render(merged).items():
        data[key] = rendered.value
        sources[key] = DEFAULT
        found = _last_touch(rendered.paths, layers)
        if found is None and (key not in baseline or baseline[key].value != rendered.value):
            found = _last_touch(rendered.conditions, layers)  # e.g. cni.customConf -> ""
        if found is not None:
            sources[key], helm_paths[key] = found
    if "extraConfig" in merged:
        problems.extend(
            ConfigError(f"extraConfig.{k}", err.message, source=sources.get(k, DEFAULT))
            for err in _check_keys({k: data[k] for k in merged["extraConfig"] or {}}, "")
            for k in [err.key]
        )

    if configmap is not None:
        name, raw = configmap
        source = configmap_source(name)
        upgraded, notes = upgrade_legacy(raw)
        warnings.extend(f"{source}: {key}: {note}" for key, note in notes)
        problems.extend(_check_keys(upgraded, source))
        for key, value in upgraded.items():
            if sources.get(key, DEFAULT) == DEFAULT:
                data[key], sources[key] = value, source

    for key, (trigger, why) in chart.required_keys(merged).items():
        if not data.get(key):
            touched = _last_touch((trigger,), layers)
            problems.append(ConfigError(key, why, source=touched[0] if touched else DEFAULT))

    labels = {k: s for k, s in sources.items()}
    parsed: dict[type, Any] = {}
    for cls in (AgentSettings, OperatorSettings):
        try:
            parsed[cls] = cls.from_configmap(data, sources=labels)
        except ConfigErrors as err:
            problems.extend(_helm_named(e, helm_paths) for e in err.errors)
    problems = _unique(problems)
    if problems:
        raise ConfigErrors(problems)

    agent: AgentSettings = parsed[AgentSettings]
    for key in all_keys():
        sources.setdefault(key, DEFAULT)
    if agent.kube_proxy_replacement and not agent.bpf_lb_sock:
        # The agent forces socket-LB on with kube-proxy replacement (pkg/kpr).
        agent = replace(agent, bpf_lb_sock=True)
        sources["bpf-lb-sock"] = f"{sources['kube-proxy-replacement']} (kube-proxy-replacement)"
    errors, cross_warnings = checks.check(agent, sources)
    if errors:
        raise ConfigErrors(errors)
    return Resolved(
        settings=agent,
        operator=parsed[OperatorSettings],
        sources=dict(sorted(sources.items())),
        warnings=tuple(warnings + cross_warnings),
        operator_replicas=operator_replicas,
    )


def _last_touch(
    paths: Sequence[str], layers: Sequence[tuple[str, list[v.Path]]]
) -> tuple[str, str] | None:
    """(source, path) of the highest-precedence layer that set any of ``paths``."""
    for source, leaves in reversed(layers):
        for path in paths:
            split = tuple(path.split("."))
            if any(_overlaps(split, leaf) for leaf in leaves):
                return source, path
    return None


def _helm_named(err: ConfigError, helm_paths: Mapping[str, str]) -> ConfigError:
    """Name the Helm value too when a rendered key is bad: ``loadBalancer.mode (bpf-lb-mode)``."""
    path = helm_paths.get(err.key)
    if path is None:
        return err
    return ConfigError(f"{path} ({err.key})", err.message, source=err.source)


def _unique(errors: Sequence[ConfigError]) -> list[ConfigError]:
    seen: set[str] = set()
    out = []
    for err in errors:
        if str(err) not in seen:
            seen.add(str(err))
            out.append(err)
    return out
