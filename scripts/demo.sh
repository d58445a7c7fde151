#!/usr/bin/env bash
# The demo (`make demo`): adjudicate the synthetic 96-subject VAH cohort (+ 12 screen failures)
# into the default audit store (./adjudicator-audit.sqlite: a trial's folder holds its own
# trail; the demo appends, it never deletes a trail), print the summary (CRc 68/96, ORR 75/96),
# record a committee decision, re-run with the MRD threshold at 0.1 % and show the changed
# decisions (and that the machine now agrees with the committee), show where the three response
# profiles disagree (ten boundary subjects), verify the trail, and write the committee report.
set -euo pipefail
cd "$(dirname "$0")/.."
ADJ=.venv/bin/adjudicator
PY=.venv/bin/python
OUT=demo-out
mkdir -p "$OUT"
unset ADJUDICATOR_DB

latest_run() {  # the id of the newest cohort run in the trail
    $ADJ cohort runs --json | $PY -c 'import json,sys; print(json.load(sys.stdin)[-1]["run_id"])'
}
decision() {  # the latest machine decision id of SUBJECT ITEM
    $ADJ audit show --subject "$1" --use-case marrow --json | $PY -c '
import json, sys
rows = [r for r in json.load(sys.stdin) if r["item"] == sys.argv[1] and r["supersedes"] is None]
print(rows[-1]["decision_id"])' "$2"
}

echo "== 1. adjudicate the cohort (trial, ELN 2017, ELN 2022 profiles; CTCAE v4.03) =="
$ADJ cohort fixtures/cohort/vah96 fixtures/cohort/screen-failures --csv-dir "$OUT/summary-1" \
    --reason "demo: adjudication of the synthetic VAH cohort"
RUN1=$(latest_run)

echo
echo "== 2. the committee decides: a marrow whose MRD is exactly 0.01 % (the trial's cut-off) =="
REVIEWER="Dr A. Chair"   # overrides are signed: the demo reviewer gets a key (and a keyring entry) once
$ADJ keys list | grep -qF "$REVIEWER" || $ADJ keys new "$REVIEWER" --role reviewer
SID=$(grep -l "ON a threshold: mrd_eq_001" fixtures/cohort/vah96/*.yaml | head -1 | xargs basename -s .yaml)
$ADJ audit override "$(decision "$SID" A1/trial | cut -c1-12)" --supersede \
    --outcome '{"mrd_status": "negative", "flags": {"mrd_negative": true}}' \
    --reviewer "$REVIEWER" --role chair \
    --reason "central lab: 0.01 % is at the assay's limit of detection; reported negative"
$ADJ audit override "$(decision "$SID" course/trial | cut -c1-12)" --supersede \
    --outcome '{"flags": {"mrd_negative": true}}' \
    --reviewer "$REVIEWER" --role chair --reason "follows the committee's A1 MRD decision"

echo
echo "== 3. re-adjudicate with the MRD threshold at 0.1 % (was 0.01 %): what changed, and why =="
$ADJ cohort fixtures/cohort/vah96 --profiles trial --baseline "$RUN1" \
    --param vah-trial-response.mrd_threshold_pct=0.1 --csv-dir "$OUT/summary-2" \
    --reason "demo: MRD threshold 0.1 % (ELN MRD working party alternative)"
$ADJ cohort diff --baseline "$RUN1" --csv "$OUT/diff-mrd-0.1.csv" >/dev/null

echo
echo "== 4. ten boundary subjects: where ELN 2017, ELN 2022 and the trial disagree =="
$ADJ cohort fixtures/cohort/boundaries --reason "demo: profile boundaries" 2>&1 \
    | sed -n '/Response, profile/,/MRD-negative/p'

echo
echo "== 5. the runs, and the audit trail verified (./adjudicator-audit.sqlite) =="
$ADJ cohort runs | tail -n 12
$ADJ audit verify

echo
echo "== 6. the committee report and the ADaM datasets of the first run =="
$ADJ report "$RUN1" -o "$OUT/report.html"
$ADJ export adam "$RUN1" -o "$OUT/adam"    # ADaM datasets of the same run, each row with its decision id
echo "CSV summaries: $OUT/summary-1, $OUT/summary-2; diff: $OUT/diff-mrd-0.1.csv; ADaM: $OUT/adam"
echo "committee report: $(cd "$OUT" && pwd)/report.html"

echo
echo "== 7. a second trial, VIALE-A, written as rule packs and a protocol file only (no new Python) =="
# rules/_trials/viale-a/protocol.yaml + rules/viale-a-eligibility + rules/viale-a-follow-up; the
# synthetic 286 are shaped like the published arm (fixtures/cohort/viale-a-design.yaml): the packs
# must find CR 105/286 (36.7 %), CR+CRh 185/286 (64.7 %) and CR+CRi 190/286 (66.4 %).
$ADJ --trial viale-a --db "$OUT/viale-a-audit.sqlite" cohort fixtures/viale-a286 \
    --reason "demo: the synthetic VIALE-A venetoclax-azacitidine arm" 2>&1 \
    | sed -n '/Eligibility, run/,/└/p;/Response, profile eln-2022/,/└/p'
