"""Bio-inspired plasticity for any PyTorch model (the Bio Transformations API).

``from bio_transformations import X`` becomes ``from braingate.bio import X``; the submodules
``braingate.bio.bio_config`` and ``braingate.bio.bio_module`` keep the original module names.
What each method computes is in REFERENCES.md §H and in :mod:`braingate.bio.functional`.

Deliberate differences from the original package (its behaviours that were defects):

1. GAMMA draws ``Gamma(shape 1/ν², scale ν²)``, mean 1 and std ν, like every other
   distribution; the original added 1 to a gamma draw, so its multipliers had mean 2 (a doubled
   learning rate that was not documented).
2. LAYER_ADAPTIVE uses the layer's position under the converter (``ν·(1 − 0.5·l/L)``, spread
   decreasing with depth); the original silently fell back to UNIFORM because the converter never
   passed the layer index.
3. ``scale_grad()`` exists: homeostatic synaptic scaling of gradients (every postsynaptic unit's
   gradient rescaled to the layer's mean norm, directions kept). The original documented
   ``scale_grad`` but had no such method.
4. ``rejuvenate_weights()`` draws fresh weights with both signs, keeping the layer's sign balance
   (or each unit's Dale sign); the original drew positive values only, so every rejuvenation
   pushed the layer toward positive weights.
5. Dale's principle fixes one sign per presynaptic unit (a column of ``W``, an input channel of a
   conv) by default, the biological rule; the original's per-output-row sign is kept as
   ``dales_principle_mode=DaleMode.OUTPUT_ROW``. Signs come from the weights at conversion and the
   weights are clipped to them at once, so a model starts consistent.
6. Weight splitting checks that Γ divides the *output* width it groups, of every layer it
   applies to, before the model is touched; the last layer (registration order) and layers
   marked with ``set_last_module_token_for_module`` are skipped.
7. Learning-rate multipliers are buffers (in ``state_dict``, moved by ``.to``, never given to an
   optimiser), not ``nn.Parameter(requires_grad=False)``.
8. Methods that edit gradients raise a ``ValueError`` naming the layer when a gradient is
   missing, before any layer is modified; the original failed on ``None`` arithmetic.
9. Additions: braingate ``EventLinear`` is supported (plasticity on its U and V factors, each
   read as a layer: V feeds the rank units, U the outputs); TEMPORAL multipliers follow an AR(1)
   process around 1 (``P ← 1 + d(P − 1) + √(1−d²)·ν·ε`` every ``fuzzy_lr_update_freq`` steps),
   so their spread stays ν; ACTIVITY rescales each output unit's spread by
   ``clamp(2 − a_i/ā, 0.5, 1.5)`` from the recorded fraction ``a_i`` of active outputs.
"""

from braingate.bio.bio_config import DEFAULT_BIO_CONFIG, BioConfig, DaleMode, Distribution
from braingate.bio.bio_converter import BioConverter
from braingate.bio.bio_module import BioModule
from braingate.bio.distributions import SampleContext, draw_multipliers, register_distribution
from braingate.bio.targets import LayerSpec, Target, register_layer

__all__ = [
    "DEFAULT_BIO_CONFIG",
    "BioConfig",
    "BioConverter",
    "BioModule",
    "DaleMode",
    "Distribution",
    "LayerSpec",
    "SampleContext",
    "Target",
    "draw_multipliers",
    "register_distribution",
    "register_layer",
]
