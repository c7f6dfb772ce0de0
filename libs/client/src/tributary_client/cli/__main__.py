"""`python -m tributary_client.cli`, the same as the `tributary` console script."""

from . import main

main()
