"""hidyn sub-package."""
