"""The version of emotionnet (read by the build backend and by ``emotionnet --version``)."""

__version__ = "0.1.0.dev0"
