"""Fine-tuning methods on one training loop: each method file registers itself, and the registry imports the one a
config names (registry.py). Empty of imports, so the stages' declarations (stage.py) read without torch."""
