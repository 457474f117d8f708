"""hwmaps: map braingate networks onto neuromorphic chips."""
