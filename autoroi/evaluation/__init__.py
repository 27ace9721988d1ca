"""Time-based backtest of the units model and its ROI, baselines, metrics and
the validation gates. Plain package: no ``kfp``, no ``kserve``."""
