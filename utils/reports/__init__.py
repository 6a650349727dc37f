"""Human-readable reports of finished jobs (self-contained HTML, no network, no JavaScript)."""
from utils.reports.factor_tearsheet import render_factor_tearsheet
from utils.reports.tearsheet import render_tearsheet

__all__ = ["render_factor_tearsheet", "render_tearsheet"]
