"""``StoreWriteError`` where runners/tuning.py imports it from; the store itself is
``gradatlas.store`` (``RecordStore``, ``open_store``). Remove once tuning imports it there."""

from gradatlas.store import StoreWriteError

__all__ = ["StoreWriteError"]
