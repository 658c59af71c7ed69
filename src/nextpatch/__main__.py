"""`python -m nextpatch ...` runs the same CLI as the `nextpatch` command."""
from .cli import main

raise SystemExit(main())
