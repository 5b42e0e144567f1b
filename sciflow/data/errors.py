"""The errors bad input data causes. Each message names the file, group/key, shape or value at fault.

Every reader, importer and card loader of :mod:`sciflow.data` raises one of these (never a bare
numpy, h5py or yaml exception) for a problem in the user's files or options, so a command line can
print the message alone, without a traceback. All derive from :class:`DataError`, itself a
``ValueError`` so that existing ``except ValueError`` code keeps working.

==========================  =====================================================================
``DataError``               base class; also bad options of a data function (a window longer than
                            the data, a malformed ``--param-from`` mapping)
``DataFormatError``         a file is not in the layout it should be in, or cannot be read to the
                            end (truncated, corrupted, wrong shape or dtype, a foreign layout)
``DataNotFoundError``       a file or folder that should exist does not (also a
                            ``FileNotFoundError``)
``DataValueError``          the values are unusable: NaN/Inf in statistics, mixed frame spacing
``DataWriteError``          an output could not be written (disk full, read-only folder); also an
                            ``OSError``. Nothing half-written is left under a final name
``CardError``               a dataset card is missing a key or holds a bad value
==========================  =====================================================================
"""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data or options; the message names the file, key, shape or value at fault."""


class DataFormatError(DataError):
    """A file does not follow the layout or cannot be read; the message names the file and key."""


class DataNotFoundError(DataError, FileNotFoundError):
    """A data file or folder does not exist; the message names it."""


class DataValueError(DataError):
    """Values that cannot be used (NaN/Inf statistics, mixed frame spacing); names field and file."""


class DataWriteError(DataError, OSError):
    """An output file could not be written (disk full, read-only folder); the message names it."""


class CardError(DataError):
    """A card is missing a key or holds a bad value; the message names the card and key."""


__all__ = ["CardError", "DataError", "DataFormatError", "DataNotFoundError", "DataValueError", "DataWriteError"]
