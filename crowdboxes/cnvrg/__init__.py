"""cnvrg.io: the flow YAML (:mod:`.flow`), the local flow runner (:mod:`.runner`, CLI in :mod:`.cli`), the stdout
metrics protocol (:mod:`.metrics`), datasets (:mod:`.datasets`), and what every step shares (:mod:`.stepkit`:
params, one-line errors, the token)."""
