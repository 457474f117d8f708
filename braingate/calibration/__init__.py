"""Event thresholds by calibration: :func:`calibrate_thresholds` and what it returns.

- ``api``: the entry point — argument checks, the held-out split, the check and back-off.
- ``judge``: how a candidate is judged (decisions with a noise margin, output error, a metric).
- ``search``: which candidates are tried (joint scaling, best-first greedy, front-to-back).
- ``knobs``: which layers and thresholds are tuned, found through the event-module protocol.
"""

from braingate.calibration.api import calibrate_thresholds
from braingate.calibration.result import CalibrationResult, CalibrationWarning

__all__ = ["CalibrationResult", "CalibrationWarning", "calibrate_thresholds"]
