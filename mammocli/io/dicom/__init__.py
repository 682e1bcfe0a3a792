"""DICOM: scan headers, select images per view, decode pixels, group files into exams."""
