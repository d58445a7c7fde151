"""Output: tables for a terminal (rich), JSON and CSV."""
