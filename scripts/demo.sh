#!/usr/bin/env bash
# The demo (`make demo`): adjudicate the synthetic 96-subject VAH cohort (+ 12 screen failures)
# with a fresh audit store, print the summary (CRc 68/96, ORR 75/96), re-run with the MRD
# threshold at 0.1 % and show the changed decisions, then verify the audit trail.
set -euo pipefail
cd "$(dirname "$0")/.."
ADJ=.venv/bin/adjudicator
OUT=demo-out
rm -rf "$OUT" && mkdir -p "$OUT"
export ADJUDICATOR_DB="$OUT/audit.sqlite"

echo "== 1. adjudicate the cohort (trial, ELN 2017, ELN 2022 profiles) =="
$ADJ cohort fixtures/cohort/vah96 fixtures/cohort/screen-failures --csv-dir "$OUT/summary-1" \
    --reason "demo: first adjudication"

echo
echo "== 2. re-adjudicate with the MRD threshold at 0.1 % (was 0.01 %) =="
$ADJ cohort fixtures/cohort/vah96 --profiles trial \
    --param vah-trial-response.mrd_threshold_pct=0.1 --csv-dir "$OUT/summary-2" \
    --reason "demo: MRD threshold 0.1 % (ELN MRD working party alternative)"

echo
echo "== 3. verify the audit trail =="
$ADJ audit verify
