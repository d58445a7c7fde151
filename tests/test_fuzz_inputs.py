"""Issue 16: hypothesis fuzzes subject files, lab listings and rule packs with hostile mutations
(impossible dates, non-finite and huge numbers, tags, aliases, control characters, formulas,
truncation, duplicated lines) and the engine must answer every one with a decision or an
InputError: never another exception (what the command line would show as a traceback or an
"internal error"). Budget: a few seconds per property (`make test` runs them all)."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from engine.adjudicate.marrow import run_marrow
from engine.adjudicate.safety import grade_listing, grade_subject
from engine.adjudicate.screening import run_screen
from engine.errors import AdjudicatorError, InputError
from engine.record import load_subject
from engine.record.listing import read_listing
from engine.rules.load import load_pack

ROOT = Path(__file__).resolve().parents[1]
SUBJECT = (ROOT / "fixtures" / "subjects" / "example-treated-two-marrows.yaml").read_text(encoding="utf-8")
LINES = SUBJECT.splitlines()
VALUE_LINES = [i for i, t in enumerate(LINES) if ": " in t and not t.rstrip().endswith(":") and not t.lstrip().startswith("#")]

HOSTILE = [
    "2021-02-30", "0000-01-01", "2021-13-01", "2021-01-01 25:00:00", "2999-01-01", "!!int 'abc'", "!!float 'x'",
    ".nan", ".inf", "-.inf", "1e999999999", "'1e999999999'", "1.0e-300", "1.0e+308", "1.0e+40", "9" * 5000,
    "true", "false", "yes", "null", "~", "[]", "{}", "[1, [2, [3]]]", "&a x", "*a", "!!binary aGk=", "!!set {a}",
    '"\\e[2J"', '"A\\x00B"', '"\\u202eevil"', "-1", "0", "-0.0", "0.00001", "1e-05", "'=HYPERLINK(1)'",
    "1200", "'1,5'", "{value: 1200, unit: cells/uL}", "{value: -3, unit: g/L}", "{value: 1.0e+40, unit: /uL}",
    "'  '", "''", "!!str 12", "0x1F", "1_000", "'; DROP TABLE decisions; --", "\t", "｛",
]
def _is_number(text: str) -> bool:
    try:
        float(text.split(": ", 1)[1].split("#")[0].strip())
        return True
    except (ValueError, IndexError):
        return False


NUMBER_LINES = [i for i in VALUE_LINES if _is_number(LINES[i])]
NUMBER = st.one_of(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).map(repr),
    st.floats(min_value=1e-14, max_value=1e-3).map(lambda f: f"{f:.3e}".replace("e", ".0e") if "." not in f"{f:.3e}" else f"{f:.3e}"),
    st.decimals(min_value=0, max_value=100, places=7, allow_nan=False).map(str),
    st.integers(min_value=-10, max_value=10**14).map(str),
    st.sampled_from(["0.00001", "1e-05", "0.1", "99.99999", "100", "0"]),
)
NUMBER_MUTATION = st.tuples(st.just("value"), st.sampled_from(NUMBER_LINES), NUMBER)
MUTATION = st.one_of(
    NUMBER_MUTATION,
    st.tuples(st.just("value"), st.sampled_from(VALUE_LINES), st.sampled_from(HOSTILE)),
    st.tuples(st.just("value"), st.sampled_from(VALUE_LINES), st.text(min_size=0, max_size=12)),
    st.tuples(st.just("duplicate"), st.sampled_from(range(len(LINES))), st.just("")),
    st.tuples(st.just("delete"), st.sampled_from(range(len(LINES))), st.just("")),
    st.tuples(st.just("truncate"), st.integers(0, len(SUBJECT)), st.just("")),
    st.tuples(st.just("insert"), st.integers(0, len(SUBJECT)), st.text(min_size=1, max_size=8)),
)


def mutate(mutations: list[tuple[str, int, str]]) -> str:
    lines = list(LINES)
    text = None
    for kind, where, token in mutations:
        if kind == "value" and where < len(lines) and ": " in lines[where]:
            key = lines[where].split(": ", 1)[0]
            lines[where] = f"{key}: {token}"
        elif kind == "duplicate" and where < len(lines):
            lines.insert(where, lines[where])
        elif kind == "delete" and where < len(lines):
            del lines[where]
        elif kind in ("truncate", "insert"):
            text = "\n".join(lines)
            text = text[:where] if kind == "truncate" else text[:where] + token + text[where:]
            lines = text.split("\n")
    return "\n".join(lines) + "\n"


_SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@_SETTINGS
@given(st.lists(MUTATION, min_size=1, max_size=3), st.booleans())
def test_subject_files_never_raise_anything_but_input_errors(registry, mutations, as_json: bool) -> None:
    _check_subject(registry, mutate(mutations), as_json)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(NUMBER_MUTATION, min_size=1, max_size=4))
def test_numbers_that_load_reach_the_engine_without_crashing_it(registry, mutations) -> None:
    """Numbers of every size and form that pass the record's bounds are decided (durable-rules
    once crashed on 1e-05 with error 204)."""
    _check_subject(registry, mutate(mutations), False)


def _check_subject(registry, text: str, as_json: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("s.json" if as_json else "s.yaml")
        if as_json:  # the same mutation, as JSON (when the YAML still parses to something)
            try:
                data = yaml.safe_load(text)
                path.write_text(json.dumps(data, default=str).replace('"nan"', "NaN"), encoding="utf-8")
            except Exception:  # noqa: BLE001 - the YAML itself is broken: fuzz the YAML path instead
                path = Path(tmp) / "s.yaml"
                path.write_text(text, encoding="utf-8", errors="surrogatepass")
        else:
            path.write_bytes(text.encode("utf-8", "surrogatepass"))
        try:
            record = load_subject(path)
        except InputError:
            return
        db = Path(tmp) / "a.sqlite"
        for step in (lambda: run_screen(path, registry, [], db, "fuzz"),
                     lambda: run_marrow(path, registry, "all", None, [], str(db), "fuzz"),
                     lambda: grade_subject(record, "4.03", registry=registry)):
            try:
                step()
            except AdjudicatorError:
                pass


CELL = st.one_of(st.sampled_from(["", "0.4", "-1", "1e999999999", "1e-300", "NaN", "inf", "0", "=1+1", "@SUM(A1)",
                                  "neutrophils", "alt", "platelets", "potassium", "creatinine", "10^9/L", "/uL",
                                  "mmol/L", "U/L", "mg/dL", "Anemia", "Neutrophil count decreased", "9" * 400,
                                  '"', '""', "\x1b[2J", "\ufeff"]),
                 st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=10))
HEADERS = st.lists(st.sampled_from(["subject_id", "usubjid", "term", "lab_test", "value", "unit", "lln", "uln",
                                    "baseline", "\ufeffsubject_id", "value ", "Value", "", "notes"]),
                   min_size=1, max_size=8)


@_SETTINGS
@given(HEADERS, st.lists(st.lists(CELL, min_size=0, max_size=9), min_size=0, max_size=6), st.booleans())
def test_listings_never_raise_anything_but_input_errors(registry, header, rows, bom: bool) -> None:
    def cell(v: str) -> str:
        return '"' + v.replace('"', '""') + '"' if any(c in v for c in ',"\n') else v
    text = ",".join(cell(h) for h in header) + "\n" + "".join(",".join(cell(c) for c in r) + "\n" for r in rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "labs.csv"
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8", "surrogatepass"))
        try:
            got = list(read_listing(path))
        except InputError:
            return
        graded = list(grade_listing(got, "5.0", registry=registry))
        assert len(graded) == len(got)
        assert all(g["grade"] == "" or g["grade"] in range(0, 6) for g in graded)


PACK_DIR = ROOT / "rules" / "example-organ-function"
PACK_LINES = (PACK_DIR / "pack.yaml").read_text(encoding="utf-8").splitlines()
PACK_VALUE_LINES = [i for i, t in enumerate(PACK_LINES) if ": " in t and not t.lstrip().startswith("#")]


@_SETTINGS
@given(st.lists(st.tuples(st.sampled_from(PACK_VALUE_LINES), st.sampled_from(HOSTILE + ["{param: nope}", "[]",
                                                                                          "{fact: x.y}", "lt"])),
                min_size=1, max_size=3))
def test_packs_never_raise_anything_but_pack_errors(mutations) -> None:
    from engine.evaluate.durable_adapter import compile_plan
    from engine.evaluate.run import resolve_params
    lines = list(PACK_LINES)
    for where, token in mutations:
        line = lines[where]
        if ": " in line:  # replace the last value on the line (flow mappings keep their braces)
            head, _, tail = line.rpartition(": ")
            closing = tail[len(tail.rstrip("}],")):] if tail.endswith(("}", "]", ",")) else ""
            lines[where] = f"{head}: {token}{closing}"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / PACK_DIR.name
        shutil.copytree(PACK_DIR, folder)
        (folder / "pack.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            pack = load_pack(folder)
            compile_plan(pack.plan, pack.identity(), resolve_params(pack), str(pack.path))
        except InputError:
            return
