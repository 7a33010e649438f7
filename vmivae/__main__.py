"""``python -m vmivae``: the command-line interface (see ``vmivae.cli``)."""

from .cli import main

raise SystemExit(main())
