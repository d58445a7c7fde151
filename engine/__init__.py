"""trial adjudicator engine: record -> facts -> rules -> decision -> audit -> output."""

__version__ = "0.1.0"
