"""Synthetic street scenes with road signs and their true boxes (the product's rehearsal data)."""

from crowdboxes.sim.generate import SynthOptions, generate, parse_class_weights

__all__ = ["SynthOptions", "generate", "parse_class_weights"]
