"""`python -m autoresearch`: the CLI without the console script."""

from autoresearch.cli import main

main()
