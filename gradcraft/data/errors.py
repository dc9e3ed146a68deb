"""The data pipeline's own exception types.

Every reader in :mod:`gradcraft.data` turns a corrupt, truncated or unreadable file into a
:class:`DatasetError` whose message names the file and says what was expected, in the form
``"Expected …. Received: …"``. Callers can therefore catch one type for every bad-data
condition, and a property test can feed random bytes to a reader and check that nothing
else ever escapes.
"""

from __future__ import annotations

__all__ = ["ChecksumError", "DatasetError", "DatasetNotFoundError"]


class DatasetError(ValueError):
    """A data file is corrupt, truncated, of the wrong format or inconsistent."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """A dataset is not on disk and could not be downloaded; the message says how to get it."""


class ChecksumError(DatasetError):
    """A downloaded file's digest differs from the published one; the file was discarded."""
