"""Model health after deployment: what the deployed model predicted against what
happened, and how the inputs drifted (``<lake>/monitoring/roi/``)."""
