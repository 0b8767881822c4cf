"""``python -m portal.embedded redis|graph|s3``: see :func:`portal.embedded.main`."""

from portal.embedded import main

main()
