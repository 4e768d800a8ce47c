"""`python -m client.cli`: the `spokes` command."""

import sys

from client.cli import main

sys.exit(main())
