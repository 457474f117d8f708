"""braingate: event-driven, gated low-rank neural networks."""
