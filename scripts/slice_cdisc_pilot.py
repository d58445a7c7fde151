"""Copy a small slice of the CDISC pilot SDTM data (five subjects, every domain) into
fixtures/sdtm/pilot/, unchanged row by row, with its license notice.

The tests must not depend on the shared data folder; this script documents where the slice came
from and re-makes it:  .venv/bin/python scripts/slice_cdisc_pilot.py [SOURCE_FOLDER]
"""
from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

SUBJECTS = ("01-701-1015", "01-701-1239", "01-703-1100", "01-703-1182", "01-705-1186")
ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "fixtures" / "sdtm" / "pilot"


def main(source: Path) -> None:
    TARGET.mkdir(parents=True, exist_ok=True)
    for f in sorted(source.glob("*.csv")):
        with f.open(newline="", encoding="utf-8") as fh, (TARGET / f.name).open("w", newline="", encoding="utf-8") as out:
            reader = csv.reader(fh)
            writer = csv.writer(out, lineterminator="\n")
            header = next(reader)
            writer.writerow(header)
            u = header.index("USUBJID")
            writer.writerows(row for row in reader if row[u] in SUBJECTS)
    shutil.copyfile(source / "LICENSE.md", TARGET / "LICENSE.md")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent.parent / "shared" / "data" / "cdisc-pilot")
