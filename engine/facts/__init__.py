"""Fact builders: a validated record -> the flat fact sheet (dotted names, sources) a use case's
packs read. Structure only (counts, dates, flattening); every clinical threshold is in rules/.
"""
