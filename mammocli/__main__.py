"""`python -m mammocli ...` (also `torchrun -m mammocli train ...`)."""

from .cli.app import main

main()
