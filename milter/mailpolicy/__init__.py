"""mailpolicy: a milter that records SMTP transport security and authentication results and runs
policies in off / monitor / enforce mode."""

__version__ = "0.1.0"

EVENT_SCHEMA = 1
"""Version of the JSON event schema (field ``schema`` of every event line)."""
