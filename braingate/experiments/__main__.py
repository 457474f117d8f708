"""Entry point of ``python -m braingate.experiments``."""

from braingate.experiments.runner import main

if __name__ == "__main__":
    main()
