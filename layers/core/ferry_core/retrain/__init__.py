"""Retraining: start, follow and judge runs of the retrain-and-promote workflow."""
