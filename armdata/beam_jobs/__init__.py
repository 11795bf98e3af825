"""Thin Beam jobs and the command-line wiring of each command (``cli.py`` dispatches here): one module per command,
labelled steps around ``pipeline`` stage objects. The top layer: may import everything below it."""
