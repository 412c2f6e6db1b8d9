"""``python -m agents`` is the same as the ``kubekeeper`` console script."""

import sys

from agents.cli import main

sys.exit(main())
