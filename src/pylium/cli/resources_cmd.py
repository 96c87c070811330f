"""L7: ``pylium apply``, ``get`` and ``delete``: resources in the store, kubectl-style.

``apply`` validates every document of every file first, like a CRD would, and writes all of
them in one transaction, or nothing: each problem is printed on its own line naming the file,
the document and the field path, and the exit code is 1.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from pylium.base.errors import Location, ValidationError
from pylium.cli.common import dump, fail, print_table, resource_client
from pylium.model import codec, crds, registry
from pylium.model.resource import Resource, ResourceKey

_YAML_SUFFIXES = (".yaml", ".yml", ".json")

# Extra columns for ``-o wide``, per kind: (header, dotted path into the object).
_WIDE_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "Pod": (("IP", "status.podIP"), ("NODE", "spec.nodeName")),
    "Node": (("INTERNAL-IP", "status.addresses.address"), ("POD-CIDRS", "spec.podCIDRs")),
    "CiliumNode": (
        ("INSTANCE-ID", "spec.instance-id"),
        ("POD-CIDRS", "spec.ipam.podCIDRs"),
        ("OPERATOR-STATUS", "status.ipam.operator-status.error"),
    ),
    "Service": (
        ("TYPE", "spec.type"),
        ("CLUSTER-IP", "spec.clusterIP"),
        ("EXTERNAL-IP", "spec.externalIPs"),
    ),
    "CiliumPodIPPool": (("IPV4-CIDRS", "spec.ipv4.cidrs"), ("MASK", "spec.ipv4.maskSize")),
    "CiliumEndpoint": (
        ("SECURITY IDENTITY", "status.identity.id"),
        ("ENDPOINT STATE", "status.state"),
        ("IPV4", "status.networking.addressing.ipv4"),
    ),
}


def _read_sources(paths: Sequence[str]) -> list[tuple[str, str]]:
    """(source name, text) for every file given, directories expanded (sorted, non-recursive
    like kubectl without -R), ``-`` for standard input."""
    out: list[tuple[str, str]] = []
    for raw in paths:
        if raw == "-":
            out.append(("<stdin>", sys.stdin.read()))
            continue
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in _YAML_SUFFIXES)
            if not files:
                raise ValidationError([(_loc(raw), "directory holds no .yaml, .yml or .json file")])
            out.extend((str(p), p.read_text()) for p in files)
        elif path.is_file():
            out.append((raw, path.read_text()))
        else:
            raise ValidationError([(_loc(raw), "no such file or directory")])
    return out


def _loc(source: str) -> Location:
    return Location(source=source)


def load_resources(paths: Sequence[str]) -> list[Resource]:
    """Parse and validate every document; one ValidationError lists all problems."""
    resources: list[Resource] = []
    problems: list[tuple[Location, str]] = []
    for source, text in _read_sources(paths):
        try:
            resources.extend(codec.parse_documents(text, source))
        except ValidationError as err:
            problems.extend(err.problems)
    seen: dict[ResourceKey, int] = {}
    for res in resources:
        seen[res.key] = seen.get(res.key, 0) + 1
    problems.extend(
        (_loc(str(key)), f"given {count} times in one apply")
        for key, count in seen.items()
        if count > 1
    )
    if problems:
        raise ValidationError(problems)
    return resources


def _ref(key: ResourceKey) -> str:
    """kubectl's ``kind.group/name`` reference."""
    info = registry.lookup_kind(key.kind)
    group = f".{info.group}" if info.group else ""
    return f"{info.singular}{group}/{key.name}"


def apply(
    filenames: Annotated[
        list[str], typer.Option("-f", "--filename", help="File, directory or - (stdin).")
    ],
    ctx: typer.Context,
) -> None:
    """Create or update resources from YAML or JSON (all documents, or none)."""
    try:
        resources = load_resources(filenames)
    except ValidationError as err:
        fail(err.render().splitlines())
    if not resources:
        fail(["no objects passed to apply"])
    with resource_client(ctx) as client:
        results = client.apply(resources)
    for result in results:
        typer.echo(f"{_ref(result.key)} {result.action.value}")


def _age(resource: Resource, now: float) -> str:
    stamp = resource.metadata.get("creationTimestamp")
    if not stamp:
        return "<unknown>"
    created = datetime.strptime(str(stamp), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    seconds = max(0, int(now - created.timestamp()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _lookup(body: Any, path: str) -> str:
    """A dotted path into an object for table columns; through a list, every item's value
    is shown (``status.addresses.address`` lists all addresses)."""
    values = [body]
    for part in path.split("."):
        nxt: list[Any] = []
        for value in values:
            items = value if isinstance(value, list) else [value]
            nxt.extend(item.get(part) for item in items if isinstance(item, dict))
        values = [v for v in nxt if v is not None and v != ""]
    flat = [x for v in values for x in (v if isinstance(v, list) else [v])]
    return ",".join(str(x) for x in flat) or "<none>"


def get(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="Kind, plural or short name (cnp, ccnp, cn, ...).")],
    names: Annotated[list[str] | None, typer.Argument(help="Names to show.")] = None,
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
    all_namespaces: Annotated[bool, typer.Option("-A", "--all-namespaces")] = False,
    output: Annotated[str, typer.Option("-o", "--output", help="json|yaml|wide")] = "",
) -> None:
    """Show resources from the store."""
    if output not in ("", "json", "yaml", "wide"):
        fail([f"-o {output}: unknown output format (allowed: json, yaml, wide)"])
    info = registry.lookup_kind(kind)
    ns: str | None = None
    if info.namespaced and not all_namespaces:
        ns = namespace
    with resource_client(ctx) as client:
        if names:
            items: list[Resource] = []
            missing: list[str] = []
            for name in names:
                res = client.get(info.kind, name, ns or "")
                if res is None:
                    missing.append(name)
                else:
                    items.append(res)
            if missing:
                fail([f'{info.plural} "{n}" not found' for n in missing])
        else:
            items, _ = client.list(info.kind, ns)
    if output in ("json", "yaml"):
        bodies = [dict(r.body) for r in items]
        if names and len(bodies) == 1:
            typer.echo(dump(bodies[0], output).rstrip())
        else:
            doc = {"apiVersion": "v1", "kind": "List", "items": bodies}
            typer.echo(dump(doc, output).rstrip())
        return
    if not items:
        where = f" in {ns} namespace" if ns else ""
        print(f"No resources found{where}.", file=sys.stderr)
        return
    now = time.time()
    headers = ["NAME"]
    columns = _WIDE_COLUMNS.get(info.kind, ()) if output == "wide" else ()
    if info.namespaced and ns is None:
        headers.insert(0, "NAMESPACE")
    headers += [header for header, _ in columns] + ["AGE"]
    rows = []
    for res in items:
        row = [res.name] + [_lookup(res.body, path) for _, path in columns] + [_age(res, now)]
        if info.namespaced and ns is None:
            row.insert(0, res.namespace)
        rows.append(row)
    print_table(headers, rows)


def delete(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Argument(help="Kind, plural or short name.")] = None,
    names: Annotated[list[str] | None, typer.Argument()] = None,
    filenames: Annotated[list[str] | None, typer.Option("-f", "--filename")] = None,
    namespace: Annotated[str, typer.Option("-n", "--namespace")] = "default",
    ignore_not_found: Annotated[bool, typer.Option("--ignore-not-found")] = False,
) -> None:
    """Delete resources by kind and name, or those described in files."""
    keys: list[ResourceKey] = []
    if filenames:
        if kind or names:
            fail(["give either -f FILE or KIND NAME..., not both"])
        try:
            keys = [r.key for r in load_resources(filenames)]
        except ValidationError as err:
            fail(err.render().splitlines())
    else:
        if not kind or not names:
            fail(["give KIND NAME... or -f FILE"])
        assert kind is not None and names is not None
        info = registry.lookup_kind(kind)
        keys = [ResourceKey(info.kind, namespace if info.namespaced else "", n) for n in names]
    with resource_client(ctx) as client:
        existed = client.delete_many(keys)
    missing = [k for k, e in zip(keys, existed, strict=True) if not e]
    for key, was in zip(keys, existed, strict=True):
        if was:
            typer.echo(f"{_ref(key)} deleted")
    if missing and not ignore_not_found:
        fail([f'{registry.lookup_kind(k.kind).plural} "{k.name}" not found' for k in missing])


crds_app = typer.Typer(help="CustomResourceDefinitions of pylium's Cilium kinds.")


@crds_app.command("export")
def export_crds(
    directory: Annotated[Path, typer.Argument(help="Where to write one YAML file per CRD.")],
) -> None:
    """Write the CRD manifests (openAPIV3Schema from pylium's own validation schemas)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in crds.render_all().items():
        (directory / name).write_text(text)
        typer.echo(str(directory / name))


def register(app: typer.Typer) -> None:
    """Add apply, get, delete and crds to the root app."""
    app.command()(apply)
    app.command()(get)
    app.command()(delete)
    app.add_typer(crds_app, name="crds")
