"""Training of the element networks: loss and gradients (``loss``), optimisers
(``optimizers``), the epoch loop with validation and checkpoints (``loop``), presets
(``presets``)."""
