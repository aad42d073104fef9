"""icgd: transformers that run learning algorithms in their forward pass.

`import icgd` stays light: it imports no torch-heavy submodule and no matplotlib.
"""

__version__ = "0.1.0"
