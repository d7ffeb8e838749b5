"""``python -m rearcquest`` runs the ``rq`` command line."""

from rearcquest.cli import main

main()
