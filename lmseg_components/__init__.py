"""lmseg: shared components for language-guided and retrieval-augmented segmentation bundles."""

__version__ = "0.1.0"
