"""vlm-rationality: are fine-tuned VLMs right for the right reasons?"""

__version__ = "0.1.0"
