"""``python -m xpmlp``: the command line of :mod:`xpmlp.cli`."""

from .cli import main

raise SystemExit(main())
