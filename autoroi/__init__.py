"""autoroi: fine-grained ROI prediction for automotive sales incentives.

The plain package: no kfp, no kserve. Pipelines, components and serving
import it; it never imports them.
"""

__version__ = "0.1.0"
