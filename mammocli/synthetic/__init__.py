"""Synthetic, non-patient data: phantom exams, random weights, training datasets."""
