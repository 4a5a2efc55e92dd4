"""`python -m nmcompile` is the `nmcompile` command."""

from nmcompile.cli import main

main()
