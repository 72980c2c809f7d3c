"""taskapi: an asynchronous Task API on Quart."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("taskapi")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
