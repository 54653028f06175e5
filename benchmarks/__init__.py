"""Benchmarks: scripts that print a table (``python benchmarks/<name>.py --help``); importable as
``benchmarks.<name>`` from the repository root (pytest puts it on the path)."""
