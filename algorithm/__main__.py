"""`python -m algorithm`: the container entry point (grand-challenge defaults -i /input -o /output)."""

import sys

from algorithm.cli import main

sys.exit(main())
