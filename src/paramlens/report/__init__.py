"""Self-contained HTML run reports (index.html + PNG figures in one folder, no network needed)."""

from paramlens.report.html import Section, write_report

__all__ = ["Section", "write_report"]
