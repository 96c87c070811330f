"""L2: ``pylium service list`` in ``cilium-dbg service list``'s format, from map rows.

Go's tabwriter with minwidth 5, padding 3 and every cell tab-terminated: each column is as
wide as its widest cell plus 3 (at least 5), so lines carry trailing blanks as upstream's do.
One row per frontend sorted by ID; backends numbered ``1 => 10.0.0.5:80/TCP (active)``, one
per service slot, continuation lines with the first three columns empty.
"""

from __future__ import annotations

from collections.abc import Sequence

from pylium.core.lb.translate import Rows, ServiceKey, flag_type

HEADER = ("ID", "Frontend", "Service Type", "Backend")


def tabwrite(lines: Sequence[Sequence[str]], *, minwidth: int = 5, padding: int = 3) -> str:
    """Go ``tabwriter.NewWriter(w, minwidth, 0, padding, ' ', 0)`` over tab-terminated cells."""
    columns = max((len(line) for line in lines), default=0)
    widths = [
        max([minwidth, *(len(line[c]) + padding for line in lines if c < len(line))])
        for c in range(columns)
    ]
    return "".join(
        "".join(cell.ljust(widths[c]) for c, cell in enumerate(line)) + "\n" for line in lines
    )


def service_list_lines(rows: Rows) -> list[tuple[str, str, str, str]]:
    """The table cells, header first."""
    masters = sorted(
        ((v.rev_nat_index, k, v) for k, v in rows.services.items() if k.slot == 0),
        key=lambda t: t[0],
    )
    out: list[tuple[str, str, str, str]] = [HEADER]
    for rev, key, value in masters:
        backends: list[str] = []
        for slot in range(1, value.count + value.qcount + 1):
            slot_value = rows.services.get(
                ServiceKey(key.address, key.port, key.protocol, key.scope, slot)
            )
            be = rows.backends.get(slot_value.backend_id) if slot_value else None
            if be is not None:
                backends.append(f"{len(backends) + 1} => {be.address} ({be.state})")
        typ = str(flag_type(value.flags))
        first = backends[0] if backends else ""
        out.append((str(rev), str(key.frontend), typ, first))
        out.extend(("", "", "", b) for b in backends[1:])
    return out


def format_service_list(rows: Rows) -> str:
    return tabwrite(service_list_lines(rows))
