"""What the scripts share: training (state, schedule, steps, checkpoints), inference, metrics, analysis, plots.

Floors: ``model/`` and ``dataset/`` below, this package above them, the scripts on top.
"""
