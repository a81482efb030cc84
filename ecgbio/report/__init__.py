"""Reports: PNG figures (ROC, DET, score histograms, CMC, training curves, enrolment beats) and an
HTML page with the table of figures, from an evaluation or run directory (``ecgbio report``)."""

from ecgbio.report.build import Report, make_report

__all__ = ["Report", "make_report"]
