"""engine/ names no trial (issue 12): no pack id, parameter (threshold) name, guideline category,
lab test, clinical term or study drug declared in rules/ appears in engine/'s code.

The names are collected from the rules folder itself (every pack.yaml and every trial's
protocol.yaml), so a new pack or trial extends the check without touching this file. engine/ is
read as Python (ast): string constants and identifiers count, docstrings and comments do not
(they may explain with an example; they decide nothing).

ALLOWED is the measured debt: today's leaks, per file, each with the reason it is still there.
The test also fails when an allowed name is no longer found (the list must shrink with the code).
"""
from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

from engine.yamlio import safe_load_with_node

from conftest import ROOT

# Words the subject record itself is written in (docs/subject-record.md): its event kinds, the
# three-valued verdicts and the engine's own words. Packs use them as values too; they are the
# record's vocabulary, not any trial's or guideline's knowledge.
RECORD_VOCABULARY = {
    "study", "prior", "screening", "baseline", "diagnosis", "relapse", "remission", "assessment", "cycle",
    "death", "Death", "hsct", "none", "unknown", "other", "new", "normal", "positive", "negative", "male",
    "female", "mutated", "wild_type", "count", "min", "max", "ratio", "rest", "regular", "lab", "censored",
    "persistent", "allogeneic", "autologous", "intensive", "non_intensive", "as_reported", "inadequate",
    "INDETERMINATE", "ELIGIBLE", "INELIGIBLE", "NOT_EVALUABLE", "strong", "moderate", "weak",
    "systemic", "topical", "fibrinogen", "flow", "qpcr",
    # the decision a TLS pack must have (engine/adjudicate/safety.py tls_packs) and the audit use
    # case it is recorded under; the lab-terms pack also reads it as a reported-term alias
    "tls",
}

# The measured debt: file -> (names still in it, why). Shrink it; never grow it without a reason.
# Most of it is issue 12 item 2 (the trial-agnostic subject record: the record still has VAH's
# fields, and engine/facts derives the facts by name instead of from the packs' declarations).
ALLOWED: dict[str, tuple[set[str], str]] = {
    "engine/record/screening.py": (
        {"bilirubin", "creatinine", "arrhythmia", "bleeding", "budesonide_topical",
         "dexamethasone", "hydrocortisone", "methylprednisolone", "prednisone", "gvhd_treatment", "prophylaxis",
         "gilbert", "leukemic_involvement", "venetoclax"},
        "record model: VAH screening fields (GVHD steroids, labs, prior venetoclax) (item 2: coded findings)"),
    "engine/record/history.py": (
        {"CR", "CRh", "CRi", "MLFS", "NR", "PD", "PR", "SD", "disease-status"},
        "record model: the site's response labels and regimen flags of the treatment history (item 2)"),
    "engine/record/assessments.py": ({"platelets", "rbc"}, "the transfusion products of the record"),
    "engine/record/genetics.py": ({"unrelated"}, "English in a field description (not the attribution scale)"),
    "engine/facts/safety.py": ({"lab-terms"}, "notes naming the lab map pack"),
    "engine/facts/labmap.py": ({"lab-terms"}, "the lab map pack id, shared by SDTM grading (no protocol there yet)"),
    "engine/sdtm/lb.py": ({"lab-terms"}, "message names the lab map pack (engine/sdtm is the sdtm helper's)"),
    "engine/sdtm/mapping.py": ({"lab-terms"}, "field description names the lab map pack (sdtm helper's)"),
    "engine/adjudicate/safety.py": (
        {"lab-terms", "ctcae_version", "simultaneous_24h", "window_days_after", "window_days_before"},
        "the clinical CTCAE pack's version parameter and the TLS packs' window parameters, read by name "
        "(a convention every TLS pack follows: docs/safety.md); the lab map pack named in notes"),
    "engine/adjudicate/committee.py": ({"NR"}, "an example in a help message"),
    "engine/report/plots.py": ({"NR"}, "'not reached' (median survival), not the response category"),
    "engine/report/safety.py": ({"qualifier_policy"}, "text report of `ae`: the grading policy"),
}


def _conditions(node, out: set[str]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("eq", "ne") and isinstance(v, str):
                out.add(v)
            elif k == "in" and isinstance(v, list):
                out.update(x for x in v if isinstance(x, str))
            else:
                _conditions(v, out)
    elif isinstance(node, list):
        for x in node:
            _conditions(x, out)


def _outputs(value, out: set[str]) -> None:
    if isinstance(value, str):
        out.add(value)
    elif isinstance(value, dict):
        out.update(v for v in value.values() if isinstance(v, str))


def declared_names(rules: Path = ROOT / "rules") -> dict[str, set[str]]:
    """category -> names declared in the rules folder."""
    names: dict[str, set[str]] = defaultdict(set)
    for path in sorted(rules.glob("*/pack.yaml")):
        pack, _ = safe_load_with_node(path.read_text(encoding="utf-8"))
        names["pack id"].add(pack["id"])
        names["parameter"].update(p["name"] for p in pack.get("parameters") or [])
        decls = list(pack.get("facts") or []) + [f for e in pack.get("events") or [] for f in e.get("fields") or []]
        for f in decls:
            if f.get("values") and not f["name"].endswith("_unit"):      # units are physics, not knowledge
                names["value"].update(f["values"])
        values: set[str] = set()
        _conditions([pack.get("rules"), pack.get("decisions"), pack.get("course"), pack.get("collections")], values)
        names["value"].update(v for v in values if re.search(r"[A-Za-z]{2}", v) and "/" not in v)
        sections = [pack.get("decisions") or [], (pack.get("course") or {}).get("decisions") or []]
        for d in (d for s in sections for d in s):
            for row in d.get("rows") or []:
                _outputs(row.get("then"), names["category"])
            _outputs(d.get("default"), names["category"])
    names["category"] = {c for c in names["category"] if re.fullmatch(r"[A-Za-z][A-Za-z0-9_+]*", c)}
    for path in sorted(rules.glob("_trials/*/protocol.yaml")):
        proto, _ = safe_load_with_node(path.read_text(encoding="utf-8"))
        names["trial"].add(proto["id"])
        names["drug"].update(d["name"] for d in proto.get("study_drugs") or [])
    return {k: v - RECORD_VOCABULARY for k, v in names.items()}


def _docstrings(tree: ast.AST) -> set[int]:
    out = set()
    for n in ast.walk(tree):
        body = getattr(n, "body", None)
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            out.add(id(body[0].value))
    return out


def _texts(tree: ast.AST):
    """(line, text, is an identifier) of every string constant (not docstrings) and identifier."""
    docs = _docstrings(tree)
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs:
            yield n.lineno, n.value, False
        elif isinstance(n, ast.Name):
            yield n.lineno, n.id, True
        elif isinstance(n, ast.Attribute):
            yield n.lineno, n.attr, True
        elif isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            yield n.lineno, n.name, True


def leaks(engine: Path = ROOT / "engine", names: dict[str, set[str]] | None = None) -> dict[str, dict[str, list[int]]]:
    """file -> name -> lines where a declared name occurs in engine/'s code."""
    names = declared_names() if names is None else names
    tokens = sorted({t for v in names.values() for t in v if len(t) >= 2}, key=len, reverse=True)
    # a name is a whole word: not inside a longer identifier (snake_case words split on '_' count
    # for drugs and trials: `venetoclax_day_events` names venetoclax)
    words = re.compile(r"(?<![\w.-])(" + "|".join(map(re.escape, tokens)) + r")(?![\w-])")
    parts = {t for k in ("drug", "trial") for t in names.get(k, ())}
    found: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for py in sorted(engine.rglob("*.py")):
        rel = str(py.relative_to(engine.parent))
        for line, text, identifier in _texts(ast.parse(py.read_text(encoding="utf-8"))):
            # identifiers are code's own words: only a drug or trial inside one counts
            hits = set() if identifier else {m.group(1) for m in words.finditer(text)}
            hits |= {p for p in re.split(r"[^A-Za-z0-9]+", text.lower()) if p in parts}
            for h in hits:
                found[rel][h].append(line)
    return found


def test_names_are_collected_from_rules():
    names = declared_names()
    assert "eln-2017-response" in names["pack id"] and "CRi" in names["category"]
    assert "neutrophils" in names["value"] and "mrd_threshold_pct" in names["parameter"]


def test_the_check_catches_a_leak(tmp_path):
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "x.py").write_text('"""eln-2017-response in a docstring is fine."""\n'
                                               '# so is CRi in a comment\n'
                                               'PACK = "eln-2017-response"\nBEST = ("CRi",)\n'
                                               'def venetoclax_days():\n    return "crcl_min_ml_min"\n'
                                               'NOT = ("CRis", "xeln-2017-response", "subject.CRi")\n')
    names = {"pack id": {"eln-2017-response"}, "category": {"CRi"}, "drug": {"venetoclax"},
             "parameter": {"crcl_min_ml_min"}}
    found = leaks(tmp_path / "engine", names)["engine/x.py"]
    assert {k: v for k, v in found.items()} == {"eln-2017-response": [3], "CRi": [4], "venetoclax": [5],
                                                "crcl_min_ml_min": [6]}


def test_engine_names_no_trial():
    found = leaks()
    new = {f: sorted(set(n) - ALLOWED.get(f, (set(), ""))[0]) for f, n in found.items()}
    new = {f: [f"{n} (line {found[f][n][0]})" for n in ns] for f, ns in new.items() if ns}
    stale = {f: sorted(ns - set(found.get(f, {}))) for f, (ns, _) in ALLOWED.items()}
    stale = {f: ns for f, ns in stale.items() if ns}
    assert not new, f"engine/ names what rules/ declares (move it into rules/ as data): {new}"
    assert not stale, f"allowed leaks that are gone (remove them from ALLOWED): {stale}"
