"""How fast a DataLoader delivers collated batches of a Dataset."""

from __future__ import annotations

import time

from torch.utils.data import DataLoader, Dataset

from dataset.voc_dataset import collate_fn


def benchmark_loader(dataset: Dataset, batch_size: int = 2, num_workers: int = 2, num_batches: int = 40) -> float:
    """Images per second delivered as collated batches by a DataLoader (after one warm-up batch)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers, collate_fn=collate_fn)
    it = iter(loader)
    next(it)
    count, start = 0, time.perf_counter()
    for _, (images, _) in zip(range(num_batches), it):
        count += images.shape[0]
    return count / (time.perf_counter() - start)
