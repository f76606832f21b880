"""`python -m attune` runs the CLI."""

from attune.cli import main

main()
