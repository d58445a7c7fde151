"""Which row of a decision table decided: read from a trace, for every report of a decision
(kept apart from the HTML report so that `screen` and `marrow` do not import it)."""
from __future__ import annotations

from typing import Any


def deciding_rows(trace: list[dict[str, Any]], pack_id: str | None = None) -> list[tuple[str, str]]:
    """(pack, row key) of the first met row of each decision table in a trace (the row that
    decided under a 'first' policy; rows are traced in table order)."""
    seen: dict[tuple[str, str], str] = {}
    for t in trace:
        key = str(t.get("rule"))
        if "#" in key and t.get("outcome") == "met" and (pack_id is None or t.get("pack") == pack_id):
            seen.setdefault((t.get("pack"), key.split("#", 1)[0]), key)
    return [(p, k) for (p, _), k in seen.items()]
