"""Results and where they go: the schema, the one atomic writer, output sinks, heatmap files."""
