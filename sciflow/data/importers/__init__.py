"""Importers that convert foreign dataset layouts into sciflow's format (``docs/data-format.md``).

Each importer writes ``<out>/data/{train,valid,test}/*.hdf5`` and ``<out>/card.yaml``, so that
``SciflowData(card=str(out / "card.yaml"))`` trains on the result directly. Imports are
resumable (existing output files are kept) and refuse to mix with another import's files.
"""

from sciflow.data.importers.cfdbench import import_cfdbench
from sciflow.data.importers.pdebench import import_pdebench

__all__ = ["import_cfdbench", "import_pdebench"]
