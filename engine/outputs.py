"""Where a command will write, checked before it does any work.

Why: `--output` into a missing folder used to fail after the decisions were committed, with a
traceback: the trail said the listing was graded, the user had no file. Every output location is
checked first (exit 2, nothing written); writes themselves are atomic where they replace a file.
"""
from __future__ import annotations

import os
from pathlib import Path

from engine.errors import InputError


def check_output_file(path: str | Path | None, option: str) -> None:
    """A file the command will create or replace: its folder exists and is writable, and it is
    not a folder itself."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise InputError("is a folder", file=str(p), field=option, expected="a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError("the folder does not exist", file=str(p), field=option, expected="a file in an existing folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError("the folder is not writable", file=str(p), field=option, expected="a writable folder")


def check_output_dir(path: str | Path | None, option: str) -> None:
    """A folder the command will write files into (created if absent): it is not a file, and
    the nearest existing folder above it is writable."""
    if path is None:
        return
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise InputError("is a file, not a folder", file=str(p), field=option, expected="a folder")
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"{probe} is a file, not a folder", file=str(p), field=option, expected="a folder path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"{probe} is not writable", file=str(p), field=option, expected="a writable folder")
