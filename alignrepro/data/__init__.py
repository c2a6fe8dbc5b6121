"""Data layer: one record schema (`Record`) whatever the source (hub, shipped file, or generated)."""

from alignrepro.data.records import Record, load_records, save_records

__all__ = ["Record", "load_records", "save_records"]
