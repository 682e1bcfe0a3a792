"""Training and fine-tuning (`mammocli train`): config, data, loop, DDP, export."""
