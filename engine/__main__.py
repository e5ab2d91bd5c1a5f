"""`python -m engine COMMAND`: the commands live in engine/cli.py."""

import sys

from engine.cli import main

sys.exit(main())
