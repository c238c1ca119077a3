"""``python -m hidyn`` is the ``hidyn`` command."""
import sys

from hidyn.cli import main

sys.exit(main())
