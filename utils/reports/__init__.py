"""Human-readable reports of finished jobs (self-contained HTML, no network, no JavaScript)."""
from utils.reports.tearsheet import render_tearsheet

__all__ = ["render_tearsheet"]
