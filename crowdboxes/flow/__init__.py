"""cnvrg flow YAML: parse and check it (:mod:`.spec`), run it locally with cnvrg's semantics (:mod:`.runner`)."""

from crowdboxes.flow.spec import Flow, FlowError, Param, Task, check_flow, load_flow, slugify, validate_file

__all__ = ["Flow", "FlowError", "Param", "Task", "check_flow", "load_flow", "slugify", "validate_file"]
