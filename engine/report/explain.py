"""`adjudicator rules explain` as text: a rule, a decision table or one of its rows."""
from __future__ import annotations

from typing import Any


def explain_lines(info: dict[str, Any]) -> list[str]:
    """Plain lines of an `explain_rule` document (the same document as --json)."""
    pack = info["pack"]
    tag = info["kind"] + (f", basis: {info['basis']}" if info.get("basis") else "")
    if info["kind"] == "decision row":
        tag += f", row {info['row']} of {info['rows']}, hit policy {info['hit_policy']}"
    elif info["kind"] == "decision table":
        tag += f", hit policy {info['hit_policy']}" + (", complete" if info.get("complete") else "")
    out = [f"{info['rule']}: {info['title']}   [{tag}]",
           f"pack {pack['id']} {pack['version']} (sha256 {pack['sha256'][:12]})"]
    if info.get("citation"):
        out.append(f"source: {info['citation']}")
    if info.get("source_text"):
        out.append(f"  \"{info['source_text']}\"")
    if info.get("note"):
        out.append(f"note: {info['note']}")
    if info["kind"] == "decision table":
        out.append("rows (priority order):" if info["hit_policy"] == "first" else "rows:")
        for r in info["rows"]:
            out.append(f"  {r['row']}: {r['title'] or '(no title)'}")
            out.append(f"      then {_words(r['then'])}")
        if info.get("default") is not None:
            out.append(f"  otherwise: {_words(info['default'])}")
        return out
    out.append("met when:")
    out += ["  " + line for line in info["condition"]]
    if info["kind"] == "decision row":
        out.append(f"then: {info['then_words']}")
    out.append(f"unknown when: {info['unknown_when']}")
    return out


def _words(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)
