"""The reviewer's report: one self-contained HTML page per model version
(inputs in :mod:`autoroi.report.page`, charts in :mod:`autoroi.report.svg`)."""

from autoroi.report.page import render_report, report_inputs

__all__ = ["render_report", "report_inputs"]
