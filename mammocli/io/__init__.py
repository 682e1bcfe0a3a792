"""Finding exams on disk and reading their pixels."""
