"""Rolling a registered, approved model version out to KServe: the control
flow shared by the cluster and the local target (:mod:`autoroi.deploy.rollout`),
the cluster's InferenceService (:mod:`autoroi.deploy.kserve`), local model
server processes (:mod:`autoroi.deploy.local`), the smoke test
(:mod:`autoroi.deploy.smoke`)."""
