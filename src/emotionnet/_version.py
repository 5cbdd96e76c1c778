"""The version of emotionnet (read by the build backend and by ``emotionnet --version``)."""

__version__ = "0.1.0.dev0"
"""The installed version of emotionnet, a :pep:`440` string (``emotionnet --version``)."""
