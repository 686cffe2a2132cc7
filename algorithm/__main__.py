"""`python -m algorithm`: the container entry point (grand-challenge defaults -i /input -o /output)."""

from algorithm.cli import entry

entry()
