"""Rule packs: the YAML language (model.py), loading and hashing (load.py), plain-words rendering (explain.py)."""
