"""Stages 1, 2 and the augmentation window: crop, optimal centre, network input window."""
