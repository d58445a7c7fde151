"""Reading subject files (YAML or JSON) and subject tables (JSON Lines) into `SubjectRecord`,
with one-line errors.

Every failure is an `InputError` naming the file (with the line when known), the subject, the
dotted field (e.g. `on_study.assessments[1].marrow.blasts_pct`) and the expectation. A table
(`.jsonl`/`.ndjson`) holds one subject JSON object per non-blank line, for bulk runs where a
folder of a million files is impractical; its subjects are named `<table>:<line>`.
"""

import functools
import json
import os
import re
import stat
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from engine.yamlio import MAX_DIGITS, error_location, safe_load_with_node
from pydantic import ValidationError

from engine.errors import InputError
from engine.record.base import FieldError
from engine.record.history import HISTORY_TYPES
from engine.record.subject import SubjectRecord

SUFFIXES = (".yaml", ".yml", ".json")
MAX_FILE_BYTES = 16 << 20     # a subject file (a real one is a few KB)
MAX_LINE_BYTES = 16 << 20     # one subject line of a table
TABLE_SUFFIXES = (".jsonl", ".ndjson")


def load_subject(path: str | Path) -> SubjectRecord:
    """Read and validate one subject file; raise InputError on any bad input."""
    path = Path(path)
    text = _read_text(path)
    if path.suffix.lower() == ".json":
        return parse_subject_json(text, str(path))
    data, node = _parse_yaml(text, path)
    return _validate(data, str(path), node)


def parse_subject_json(text: str, origin: str, *, one_line: bool = False) -> SubjectRecord:
    """Validate one subject from JSON text; errors name `origin` (a .json file, or a table line
    `cohort.jsonl:17`). one_line: the text is one table line, so `origin` already names the line
    and a syntax error adds only its column (a file's syntax error adds its line)."""
    try:
        data = json.loads(text, object_pairs_hook=_unique_pairs, parse_int=_json_int,
                          parse_float=_json_float, parse_constant=_json_constant)
    except json.JSONDecodeError as exc:
        if one_line:
            raise InputError(f"malformed JSON: {exc.msg} at column {exc.colno}", file=origin) from None
        raise InputError(f"malformed JSON: {exc.msg} at line {exc.lineno} column "
                         f"{exc.colno}", file=f"{origin}:{exc.lineno}") from None
    except _DuplicateKey as exc:
        raise InputError(f"duplicate key {exc.key!r}", file=origin, field=exc.key,
                         expected="each key once") from None
    except _BadNumber as exc:
        raise InputError(str(exc), file=origin, expected="a finite number of at most "
                         f"{MAX_DIGITS} digits") from None
    except RecursionError:
        raise InputError("nested too deeply", file=origin, expected="a subject record "
                         "(a few levels of objects and lists)") from None
    return _validate(data, origin, None)


def is_table(path: str | Path) -> bool:
    """A subject table (JSON Lines) by its suffix."""
    return Path(path).suffix.lower() in TABLE_SUFFIXES


def iter_table(path: str | Path) -> Iterator[tuple[int, str | InputError]]:
    """(line number, text) of every non-blank line of a table, streamed (the table is never read
    whole). A line that is not UTF-8 comes as an InputError naming `table:line` instead of its
    text, so that a caller reports it and goes on; a table that cannot be opened raises."""
    for number, raw in _table_lines(path):
        if isinstance(raw, InputError):
            yield number, raw
            continue
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start + 1})",
                                     file=f"{path}:{number}", expected="a UTF-8 JSON Lines file")


def count_table(path: str | Path) -> int:
    """The number of subjects (non-blank lines) of a table: one streaming pass, no decoding."""
    return sum(1 for _ in _table_lines(path))


def _table_lines(path: str | Path) -> Iterator[tuple[int, bytes | InputError]]:
    """(1-based physical line number, stripped bytes) of the non-blank lines; a line longer than
    MAX_LINE_BYTES comes as an InputError (and is skipped to its end, never held whole)."""
    path = Path(path)
    if not is_table(path):
        raise InputError(f"unsupported table type {path.suffix or '(none)'!r}", file=str(path),
                         expected="a .jsonl or .ndjson file")
    with open_regular(path, "a .jsonl subject table") as fh:
        number = 0
        while True:
            raw = fh.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            number += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):   # skip the rest of the line
                    raw = fh.readline(1 << 20)
                yield number, InputError(f"line longer than {MAX_LINE_BYTES >> 20} MiB",
                                         file=f"{path}:{number}",
                                         expected="one subject record per line")
                continue
            raw = raw.strip()
            if raw:
                yield number, raw


def _validate(data: Any, origin: str, node: Any) -> SubjectRecord:
    if not isinstance(data, dict):
        raise InputError(f"the file holds a {type(data).__name__}, not a mapping",
                         file=origin, expected="one subject as a mapping of fields")
    subject = data.get("subject_id") if isinstance(data.get("subject_id"), str) else None
    bad = bad_text(data)
    if bad is not None:
        loc, problem = bad
        line = _line_of(node, loc)
        raise InputError(problem, file=f"{origin}:{line}" if line else origin,
                         subject=subject if loc != ("subject_id",) else None, field=_dotted(loc) or None,
                         expected="printable text (no control characters)")
    try:
        record = SubjectRecord.model_validate(data)
    except ValidationError as exc:
        raise _to_input_error(exc, origin, subject, node) from None
    if record.sources:   # an imported record: its facts cite where each value came from (field_source)
        _PROVENANCE[_canonical(origin, os.getcwd())] = record
    return record


def load_subjects(folder: str | Path) -> Iterator[tuple[Path, SubjectRecord | InputError]]:
    """Every subject file in a folder (not recursive, sorted by name): (path, record or error).

    A subject_id already seen in an earlier file is reported as an error for the later file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("not a folder", file=str(folder), expected="a folder of subject files")
    seen: dict[str, Path] = {}
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES):
        try:
            record = load_subject(path)
        except InputError as exc:
            yield path, exc
            continue
        if record.subject_id in seen:
            yield path, InputError(f"subject_id also used by {seen[record.subject_id]}",
                                   file=str(path), subject=record.subject_id,
                                   field="subject_id", expected="one file per subject")
            continue
        seen[record.subject_id] = path
        yield path, record


# records that carry their own provenance (`sources`, e.g. an SDTM import), by origin, while alive
_PROVENANCE: "weakref.WeakValueDictionary[str, SubjectRecord]" = weakref.WeakValueDictionary()


def field_source(path: str | Path, dotted_field: str) -> str:
    """Provenance of a value: `<file>#<dotted field>`, e.g. `S001.yaml#screening.labs.bilirubin`.

    The file is named one way however it was spelled (`./a/S1.yaml`, `a//S1.yaml`, an absolute
    path, a symlink): relative to the working folder when inside it, else absolute, so that the
    audited input and its hash do not depend on the spelling. A table line `t.jsonl:17` keeps
    its line. A record that says where its values came from (`sources`: an SDTM import) is cited
    by that: `LB 01-701-1015 LBSEQ 17 LBORRES`."""
    where = _canonical(str(path), os.getcwd())
    record = _PROVENANCE.get(where)
    if record is not None and record.sources:
        hit = _recorded_source(record.sources, dotted_field)
        if hit:
            return hit
    return f"{where}#{dotted_field}"


def _recorded_source(sources: dict[str, str], dotted_field: str) -> str | None:
    """The source of a field, of the object holding it, or (for an object) of the records its
    fields came from."""
    field = dotted_field
    while field:
        if field in sources:
            return sources[field]
        cut = max(field.rfind("."), field.rfind("["))
        field = field[:cut] if cut > 0 else ""
    below = [v for k, v in sources.items() if k.startswith((dotted_field + ".", dotted_field + "["))]
    if below:   # an object: the records it was built from (without the variable)
        return ", ".join(dict.fromkeys(v.rsplit(" ", 1)[0] for v in below))
    return None


@functools.lru_cache(maxsize=256)
def _canonical(path: str, cwd: str) -> str:  # called once per fact: cache the path conversion
    base, sep, line = path.rpartition(":")
    if not (sep and line.isdigit() and base):
        base, line = path, ""
    p = Path(cwd, base).resolve()
    try:
        text = p.relative_to(Path(cwd).resolve()).as_posix()
    except ValueError:
        text = p.as_posix()
    return f"{text}:{line}" if line else text


# --- reading -----------------------------------------------------------------------------

def _read_text(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"unsupported file type {suffix or '(none)'!r}", file=str(path),
                         expected="a .yaml, .yml or .json file")
    raw = read_bounded(path, MAX_FILE_BYTES, "a subject file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"cannot read file: not UTF-8 text ({exc.reason} at byte {exc.start + 1})",
                         file=str(path), expected="a UTF-8 text file") from None


def open_regular(path: str | Path, what: str, mode: str = "rb", **kwargs: Any) -> Any:
    """Open an input file, refusing what is not a regular file (a folder, /dev/zero, a FIFO):
    reading such a thing has no end, or is not what was meant."""
    path = Path(path)
    try:
        fh = path.open(mode, **kwargs)
    except FileNotFoundError:
        raise InputError("cannot read: file not found", file=str(path), expected=what) from None
    except IsADirectoryError:
        raise InputError("is a folder, not a file", file=str(path), expected=what) from None
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}", file=str(path), expected=what) from None
    try:
        regular = stat.S_ISREG(os.fstat(fh.fileno()).st_mode)
    except OSError:
        regular = False
    if not regular:
        fh.close()
        raise InputError("not a regular file (a device, pipe or folder)", file=str(path), expected=what)
    return fh


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """The bytes of a regular file of at most `limit` bytes (InputError otherwise)."""
    with open_regular(path, what) as fh:
        try:
            raw = fh.read(limit + 1)
        except OSError as exc:
            raise InputError(f"cannot read file: {exc.strerror or exc}", file=str(path)) from None
    if len(raw) > limit:
        raise InputError(f"larger than {limit // (1 << 20)} MiB", file=str(path),
                         expected=f"{what} of at most {limit // (1 << 20)} MiB")
    return raw


class _BadNumber(ValueError):
    pass


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise _BadNumber(f"an integer of {len(text.lstrip('-'))} digits cannot be data")
    return int(text)


def _json_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _BadNumber(f"the number {text[:40]} is too large to be data")
    return value


def _json_constant(name: str) -> Any:
    raise _BadNumber(f"{name} is not a number a record can hold")


def _parse_yaml(text: str, path: Path) -> tuple[Any, Any]:
    """The parsed data and its node tree (for line numbers of errors); duplicate keys, alias
    bombs, impossible dates and non-finite numbers are refused by engine.yamlio with the line."""
    try:
        return safe_load_with_node(text)  # one parse: nodes for lines, safe data
    except yaml.YAMLError as exc:
        line, column, problem, key = error_location(exc)
        where = f" at line {line} column {column}" if line else ""
        raise InputError(f"malformed YAML: {problem}{where}" if key is None else problem,
                         file=f"{path}:{line}" if line else str(path), field=key,
                         expected="each key once" if "duplicate key" in problem else None) from None


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(key)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


# --- text -------------------------------------------------------------------------------

# C0 controls but tab, newline and carriage return; DEL; C1 controls; lone surrogates (which
# cannot be written as UTF-8); the bidirectional overrides that reorder what a reader sees.
_BAD_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")
_BAD_KEY_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


def bad_text(data: Any) -> tuple[tuple[Any, ...], str] | None:
    """(location, problem) of the first key or text value holding a control character (an id
    with ESC[2J would clear the terminal of whoever prints it) or a lone surrogate; else None.
    Iterative: the depth of hostile input does not matter."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while stack:
        value, loc = stack.pop()
        if isinstance(value, str):
            m = _BAD_CHARS.search(value)
            if m:
                return loc, f"text holds the control character U+{ord(m.group()):04X}"
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(k, str) and _BAD_KEY_CHARS.search(k):
                    return loc + (k,), f"key {k!r} holds a control character"
                stack.append((v, loc + (k,)))
        elif isinstance(value, list):
            stack.extend((v, loc + (i,)) for i, v in enumerate(value))
    return None


# --- errors ------------------------------------------------------------------------------

def _to_input_error(exc: ValidationError, origin: str, subject: str | None,
                    node: Any) -> InputError:
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = _clean_loc(first["loc"])
    if first["type"] in ("union_tag_invalid", "union_tag_not_found"):
        loc = loc + ("type",)
    cause = (first.get("ctx") or {}).get("error")
    expected = None
    if isinstance(cause, FieldError):
        message, expected = cause.message, cause.expected
        if cause.field:
            loc = loc + tuple(_split_dotted(cause.field))
    elif first["type"] == "missing":
        message = "required field is missing"
    else:
        message = first["msg"].removeprefix("Value error, ").replace("valid decimal",
                                                                      "valid number")
        value = first.get("input")
        if not isinstance(value, (dict, list)) and first["type"] != "extra_forbidden":
            message += f" (got {value!r})"
    if len(errors) > 1:
        message += f" (+{len(errors) - 1} more)"
    line = _line_of(node, loc)
    file = f"{origin}:{line}" if line else origin
    return InputError(message, file=file, subject=subject, field=_dotted(loc) or None,
                      expected=expected)


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop the discriminator tag pydantic inserts after a history index."""
    out: list[Any] = []
    for i, part in enumerate(loc):
        if (isinstance(part, str) and part in HISTORY_TYPES and i >= 2
                and isinstance(loc[i - 1], int) and loc[i - 2] == "treatment_history"):
            continue
        out.append(part)
    return tuple(out)


def _split_dotted(dotted: str) -> list[Any]:
    parts: list[Any] = []
    for piece in dotted.split("."):
        name, _, rest = piece.partition("[")
        if name:
            parts.append(name)
        while rest:
            index, _, rest = rest.partition("]")
            parts.append(int(index))
            rest = rest.lstrip("[")
    return parts


def _dotted(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _line_of(node: Any, loc: tuple[Any, ...]) -> int | None:
    """Line (1-based) of the deepest YAML node on the path of `loc` (None for JSON)."""
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next(((k, v) for k, v in node.value if k.value == part), None)
            if match is None:
                break
            line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


# --- subject ids without a full parse (duplicate detection before a cohort run) -------------

_ID = r"[A-Za-z0-9][A-Za-z0-9_.\-]*"
_YAML_ID = re.compile(rf"^subject_id:[ \t]*(?:'({_ID})'|\"({_ID})\"|({_ID}))[ \t]*(?:#.*)?$", re.M)
_YAML_KEY = re.compile(r"^subject_id\s*:", re.M)
_JSON_ID = re.compile(rf'"subject_id"\s*:\s*"({_ID})"')


def quick_subject_id(text: str, json_text: bool) -> str | None:
    """The subject_id of a subject file's or table line's text, found without building the
    record (a cohort checks a million ids for duplicates before writing anything): a pattern for
    the plain spellings, a full parse otherwise. None: the text has no readable id (the record
    is refused later, with its real error). A valid record's id is always found exactly."""
    if json_text:
        if text.count('"subject_id"') == 1:
            m = _JSON_ID.search(text)
            if m:
                return m.group(1)
    else:
        if len(_YAML_KEY.findall(text)) == 1:
            m = _YAML_ID.search(text)
            if m:
                return next(g for g in m.groups() if g is not None)
    try:
        if json_text:
            data = json.loads(text, object_pairs_hook=_unique_pairs, parse_int=_json_int,
                              parse_float=_json_float, parse_constant=_json_constant)
        else:
            data, _ = safe_load_with_node(text)
    except (ValueError, RecursionError, yaml.YAMLError):
        return None
    value = data.get("subject_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def file_subject_id(path: str | Path) -> str | None:
    """`quick_subject_id` of a subject file (None when it cannot be read: reported later)."""
    path = Path(path)
    try:
        text = _read_text(path)
    except InputError:
        return None
    return quick_subject_id(text, path.suffix.lower() == ".json")
