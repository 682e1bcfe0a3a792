"""Reading results back: tables, predictions, metrics, hybrid, evaluation, plots, reproduce."""
