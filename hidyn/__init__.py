"""hidyn: high-dimensional learning dynamics, theory and Monte-Carlo behind one spec."""
from hidyn._version import __version__
