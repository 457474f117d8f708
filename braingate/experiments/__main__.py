"""Entry point of ``python -m braingate.experiments``."""

import sys

from braingate.experiments.runner import main

if __name__ == "__main__":
    sys.exit(main())
