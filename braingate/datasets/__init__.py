"""Real streams built from data that ships inside packages (DESIGN §5); no downloads.

Each builder lives in its own module (imported on use, so ``import braingate`` stays lean):
``braingate.datasets.saccade`` (saccade digits), ``braingate.datasets.camera`` (camera-motion
video).
"""
