#!/usr/bin/env bash
# The demo (`make demo`): adjudicate the synthetic 96-subject VAH cohort (+ 12 screen failures)
# into the default audit store (./adjudicator-audit.sqlite: a trial's folder holds its own
# trail; the demo appends, it never deletes a trail), print the summary (CRc 68/96, ORR 75/96),
# re-run with the MRD threshold at 0.1 % and show the changed decisions, then verify the trail.
set -euo pipefail
cd "$(dirname "$0")/.."
ADJ=.venv/bin/adjudicator
OUT=demo-out
mkdir -p "$OUT"
unset ADJUDICATOR_DB

echo "== 1. adjudicate the cohort (trial, ELN 2017, ELN 2022 profiles; CTCAE v4.03) =="
$ADJ cohort fixtures/cohort/vah96 fixtures/cohort/screen-failures --csv-dir "$OUT/summary-1" \
    --reason "demo: adjudication of the synthetic VAH cohort"

echo
echo "== 2. re-adjudicate with the MRD threshold at 0.1 % (was 0.01 %): what changed, and why =="
$ADJ cohort fixtures/cohort/vah96 --profiles trial \
    --param vah-trial-response.mrd_threshold_pct=0.1 --csv-dir "$OUT/summary-2" \
    --reason "demo: MRD threshold 0.1 % (ELN MRD working party alternative)"

echo
echo "== 3. verify the audit trail (./adjudicator-audit.sqlite) =="
$ADJ audit verify
echo "CSV summaries: $OUT/summary-1, $OUT/summary-2"
