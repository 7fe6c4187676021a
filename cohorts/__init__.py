"""Cohorts: dataset adapters -> one manifest (+ clinical table), image I/O, sampling, demo cohort."""
