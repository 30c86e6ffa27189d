"""Sub-commands of the ``affectgraph`` command line, one typer app per module."""
