"""`python -m gridrun.cli`: the `gridrun` command."""
from . import main

main()
