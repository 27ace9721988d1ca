"""The KServe model server of the ``roi`` InferenceService: ``python -m
serving.roi_server --model-dir PATH`` or ``--lake URI --version V`` (see
``serving/roi_server/README.md``)."""
