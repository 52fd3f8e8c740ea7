"""Self-contained HTML run reports (index.html + PNG figures in one folder, no network needed)."""

from paramlens.report.html import Section, write_report
from paramlens.report.run import section_of, write_run

__all__ = ["Section", "write_report", "write_run", "section_of"]
