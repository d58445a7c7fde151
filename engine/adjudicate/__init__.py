"""Use cases: screen a candidate, adjudicate a marrow, grade safety, re-adjudicate a cohort.

Each turns a subject record into fact sheets, evaluates pack chains, and returns a decision
plus the audit entry that records it (see common.audit_entry).
"""
