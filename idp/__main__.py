"""python -m idp: the idp command."""

from idp.cli import main

main()
