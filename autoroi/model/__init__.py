"""The units model, its features and artifact, the ROI formula and the tuner.

Plain package: no ``kfp``, no ``kserve``. Import the submodules you need
(TensorFlow loads with ``network``, ``artifact``, ``train`` and ``tuning``;
``features`` and ``roi`` stay light)."""
