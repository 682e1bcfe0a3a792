"""Running the models: heatmaps, classification, the predictor, batches, devices, precision."""
