"""Evaluation: plan (strata), fact sheets with derived facts, the two evaluators, hit policies."""
